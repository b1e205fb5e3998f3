"""Protocol v1 parsing and schema: no sockets, no event loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.errors import ErrorCode, ProtocolError
from bridge.protocol import HelloMessage, TokenMessage, ToolResponseMessage, UserMessage
from bridge.wire import (
    dump_server_message,
    parse_client_message,
    parse_server_message,
    protocol_json_schema,
)

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json"


def error_code(frame: str) -> ErrorCode:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(frame)
    return caught.value.code


def test_every_client_message_parses_to_its_model() -> None:
    hello = parse_client_message('{"type":"hello","protocol":1,"tools":[{"name":"x"}]}')
    assert isinstance(hello, HelloMessage) and hello.tools == [{"name": "x"}]
    assert isinstance(parse_client_message('{"type":"message","content":"hi"}'), UserMessage)
    response = parse_client_message(
        '{"type":"tool_response","id":"c1","status":"denied","error":{"message":"no"}}'
    )
    assert isinstance(response, ToolResponseMessage)
    assert response.status == "denied" and response.error is not None
    kinds = ["stop", "ping", "pong"]
    assert [parse_client_message(json.dumps({"type": k})).type for k in kinds] == kinds


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", ErrorCode.INVALID_JSON),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE),
        ('"text"', ErrorCode.INVALID_MESSAGE),
        ('{"content": "no type"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "launch_rockets"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "message"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "message", "content": 42}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "tool_response", "id": "c", "status": "maybe"}', ErrorCode.INVALID_MESSAGE),
        ('{"type": "tool_progress", "id": "c", "progress": 7}', ErrorCode.INVALID_MESSAGE),
    ],
)
def test_malformed_frames_get_precise_codes(frame: str, code: ErrorCode) -> None:
    assert error_code(frame) is code


def test_validation_message_names_the_field() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message('{"type": "message", "content": 42}')
    assert "content" in caught.value.message


def test_server_messages_round_trip_with_seq() -> None:
    token = TokenMessage(run_id="r1", content="hé")
    token.seq = 7
    frame = dump_server_message(token)
    assert json.loads(frame) == {"type": "token", "seq": 7, "run_id": "r1", "content": "hé"}
    assert parse_server_message(frame) == token


def test_committed_schema_matches_the_models() -> None:
    committed = json.loads(SCHEMA_FILE.read_text())
    assert committed == protocol_json_schema(), (
        "docs/protocol.schema.json is stale: regenerate it with "
        "`agent-bridge schema > docs/protocol.schema.json`"
    )


def test_schema_covers_every_message_type() -> None:
    defs = protocol_json_schema()["$defs"]
    client = {m["$ref"].rsplit("/", 1)[1] for m in defs["ClientMessage"]["oneOf"]}
    server = {m["$ref"].rsplit("/", 1)[1] for m in defs["ServerMessage"]["oneOf"]}
    assert len(client) == 12 and len(server) == 14
    for name in server:
        assert "seq" in defs[name]["properties"], f"{name} lacks seq"
