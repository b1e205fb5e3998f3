"""The input-side guards without a socket: parse, dump, schema checks, conversation, log lines."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest

from bridge.calls import TerminalStatus
from bridge.conversation import (
    AssistantTurn,
    Conversation,
    ToolCall,
    ToolResult,
    UserTurn,
    make_result,
)
from bridge.errors import ErrorCode, ProtocolError, ToolDefinitionError
from bridge.fastschema import compile_check
from bridge.limits import ToolLimits
from bridge.protocol import (
    ErrorMessage,
    RejectedTool,
    TokenMessage,
    ToolResultMessage,
    ToolsReport,
    ToolsUpdatedMessage,
)
from bridge.server.logs import LimitRepeats
from bridge.toolspec import SchemaBudget, parse_tool, register_many
from bridge.wire import dump_server_message, parse_client_message
from tests.security.wire import schema_errors


def tool(name: str = "t", **fields: Any) -> dict[str, Any]:
    return {"name": name, "parameters": {"type": "object"}, **fields}


# Parse ---------------------------------------------------------------------------------------


def test_lone_surrogates_become_replacement_characters_everywhere() -> None:
    frame = '{"type": "tool_response", "id": "c\\ud83d", "result": {"k\\udc00": ["\\ud83d"]}}'
    message = parse_client_message(frame)
    assert message.id == "c\ufffd"  # type: ignore[union-attr]
    assert message.result == {"k\ufffd": ["\ufffd"]}  # type: ignore[union-attr]
    # A proper pair is one character and stays as it is.
    assert parse_client_message('{"type": "message", "content": "\\ud83d\\ude00"}').content == (  # type: ignore[union-attr]
        "\U0001f600"
    )


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ('{"type": []}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": {"x": 1}}', ErrorCode.UNKNOWN_TYPE),
        ("[" * 100_000, ErrorCode.INVALID_JSON),
        ('{"type": "tool_response", "id": "x", "result": ' + "[" * 5000 + "]" * 5000 + "}", None),
        (b"\xff\xfe", ErrorCode.INVALID_JSON),
    ],
)
def test_hostile_frames_raise_only_protocol_errors(
    frame: str | bytes, code: ErrorCode | None
) -> None:
    try:
        parse_client_message(frame)
    except ProtocolError as exc:
        assert code is None or exc.code is code
        assert len(exc.message) < 2000
    else:
        assert code is None


def test_echoed_fields_are_short() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(json.dumps({"type": "x" * 1_000_000}))
    assert len(caught.value.message) < 200


# Dump ----------------------------------------------------------------------------------------


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    "message",
    [
        TokenMessage(seq=3, run_id="r", content="half \ud83d"),
        ToolResultMessage(seq=4, id="c", run_id="r", name="t", status="ok", result=object()),
        ToolResultMessage(seq=5, id="c", run_id="r", name="t", status="ok", result=float("nan")),
        ToolResultMessage(seq=6, id="c", run_id="r", name="t", status="ok", result=deep(5000)),
        ToolResultMessage(seq=7, id="c", run_id="r", name="t", status="ok", result={1: {2}}),
        ErrorMessage(seq=8, code="x", message="\udfff"),
        ToolsUpdatedMessage(
            seq=9,
            tools=ToolsReport(
                accepted=[], rejected=[RejectedTool(name=None, code="c", reason="r")]
            ),
        ),
    ],
)
def test_a_server_message_always_encodes_and_matches_the_schema(message: Any) -> None:
    frame = json.loads(dump_server_message(message))
    assert frame["seq"] == message.seq and frame["type"] == message.type
    assert schema_errors(frame) == []


# Results and the conversation ------------------------------------------------------------------

CALL = ToolCall("c1", "t", "{}")


@pytest.mark.parametrize("data", [object(), float("inf"), deep(5000), {"a": {1, 2}}])
def test_a_result_that_is_not_json_becomes_an_error(data: Any) -> None:
    result = make_result(CALL, TerminalStatus.OK, data=data)
    assert result.status is TerminalStatus.ERROR
    assert "could not be encoded" in result.content
    result.content.encode()


def test_surrogates_in_results_and_details_are_replaced() -> None:
    assert make_result(CALL, TerminalStatus.OK, data="x\ud83d").content == "x\ufffd"
    assert make_result(CALL, TerminalStatus.OK, data={"k": "\ud83d"}).content == '{"k": "\ufffd"}'
    make_result(CALL, TerminalStatus.ERROR, detail="bad \udc00").content.encode()


def exchange(index: int, size: int = 10) -> list[Any]:
    call = ToolCall(f"c{index}", "t", "{}")
    return [
        UserTurn("u" * size, f"r{index}"),
        AssistantTurn("", (call,), f"r{index}"),
        ToolResult(call.id, "t", TerminalStatus.OK, '"ok"'),
        AssistantTurn("a" * size, (), f"r{index}"),
    ]


def paired(conversation: Conversation) -> bool:
    return conversation.unanswered_calls() == [] and isinstance(conversation.turns[0], UserTurn)


def test_oldest_exchanges_go_first_and_never_split() -> None:
    conversation = Conversation(max_turns=10)
    for i in range(20):
        for turn in exchange(i):
            conversation.add(turn)
            assert len(conversation) <= 10 or conversation.turns[0].run_id == f"r{i}"  # type: ignore[union-attr]
    assert len(conversation) <= 10 and paired(conversation)
    assert conversation.turns[-1].run_id == "r19"  # type: ignore[union-attr]


def test_the_character_cap_keeps_the_exchange_in_progress() -> None:
    conversation = Conversation(max_chars=1000)
    for i in range(50):
        for turn in exchange(i, size=100):
            conversation.add(turn)
    assert sum(len(getattr(t, "content", "")) for t in conversation) <= 1000 and paired(
        conversation
    )
    huge = Conversation(max_chars=1000)
    for turn in exchange(0, size=5000):
        huge.add(turn)
    assert len(huge) == 4  # the only exchange stays, over the cap, rather than break


def test_a_long_result_is_cut_with_a_marker_the_model_reads() -> None:
    conversation = Conversation(max_result_chars=100)
    conversation.add(ToolResult("c", "t", TerminalStatus.OK, json.dumps(["x" * 1000]), True))
    stored = conversation.turns[0]
    assert isinstance(stored, ToolResult) and not stored.is_json
    assert stored.content.startswith('["xxx') and "truncated by the bridge" in stored.content
    assert stored.data == stored.content


# Schemas ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern", ["(a)\\1", "(?<=a)b", "(?=a)", "(?!a)", "a{1001}", "(a{1000}){1000}"]
)
def test_patterns_that_need_backtracking_are_refused_with_a_reason(pattern: str) -> None:
    params = {"type": "object", "properties": {"a": {"type": "string", "pattern": pattern}}}
    with pytest.raises(ToolDefinitionError) as caught:
        parse_tool(tool(parameters=params), ToolLimits())
    assert "linear time" in caught.value.message


def test_pattern_properties_and_additional_properties_use_the_linear_engine() -> None:
    params = {
        "type": "object",
        "patternProperties": {"^(a+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    spec = parse_tool(tool(parameters=params), ToolLimits())
    assert spec.validate_arguments({"aaaa": 1}) is None
    assert spec.validate_arguments({"aaaa": "x"}) is not None
    assert "do not match any of the regexes" in str(
        spec.validate_arguments({"a" * 5000 + "!": 1})
    ) or "does not match" in str(spec.validate_arguments({"a" * 5000 + "!": 1}))


def test_remote_meta_schemas_and_mixed_pattern_keywords_are_refused() -> None:
    with pytest.raises(ToolDefinitionError, match="Draft 2020-12"):
        parse_tool(
            tool(parameters={"type": "object", "$schema": "http://127.0.0.1:9/m"}), ToolLimits()
        )
    mixed = {"type": "object", "patternProperties": {"^a": {}}, "unevaluatedProperties": False}
    with pytest.raises(ToolDefinitionError, match="unevaluatedProperties"):
        parse_tool(tool(parameters=mixed), ToolLimits())


def test_an_exponential_schema_is_stopped_by_the_time_budget() -> None:
    defs: dict[str, Any] = {
        f"d{i}": {"anyOf": [{"$ref": f"#/$defs/d{i + 1}"}] * 2} for i in range(24)
    }
    defs["d24"] = {"type": "integer"}
    params = {"type": "object", "$defs": defs, "properties": {"v": {"$ref": "#/$defs/d0"}}}
    spec = parse_tool(tool(parameters=params), ToolLimits(max_validation_ms=20))
    assert "took longer than 20 ms" in str(spec.validate_arguments({"v": "no"}))
    assert spec.validate_arguments({"v": 1}) is None


def test_batches_and_bytes_are_bounded_before_checking() -> None:
    limits = ToolLimits(max_registration_bytes=500, registration_bytes_per_minute=800)
    accepted, rejected = register_many([{}] * 65, {}, limits)
    assert accepted == [] and [r.code for r in rejected] == ["too_many_tools"]
    big = [tool(f"t{i}", description="d" * 150) for i in range(4)]
    accepted, rejected = register_many(big, {}, limits)
    assert len(accepted) == 2 and all("bytes" in r.reason for r in rejected)
    now = [0.0]
    budget = SchemaBudget(800, lambda: now[0])
    first, _ = register_many(big[:2], {}, limits, budget=budget)
    second, refused = register_many(big[2:4], {}, limits, budget=budget)
    assert len(first) == 2 and len(second) == 1 and "last minute" in refused[0].reason
    now[0] += 60
    assert len(register_many(big[3:4], {}, limits, budget=budget)[0]) == 1


def test_fast_check_agrees_with_the_validator_on_patterns() -> None:
    # For `pattern` the accept-check and jsonschema must use one engine: RE2's `\d` is ASCII.
    rng = random.Random(7)
    patterns = ["^[a-z]+$", "\\d", "^\\w+$", "é", "^(a+)+$", "^.{2,3}$", "[[:alpha:]]"]
    words = ["", "abc", "٣", "12", "é", "aaaa", "a!", "\ud83d", "ÀB", "日本"]
    for pattern in patterns:
        schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": pattern}}}
        spec = parse_tool(tool(f"p{rng.randrange(10**9)}", parameters=schema), ToolLimits())
        check = compile_check(schema)
        assert check is not None
        for word in words:
            if check({"s": word}):
                assert spec.validate_arguments({"s": word}) is None, (pattern, word)


# Logs ------------------------------------------------------------------------------------------


def test_repeated_lines_from_one_source_are_limited() -> None:
    now = [0.0]
    limiter = LimitRepeats(burst=3, per_second=1.0, clock=lambda: now[0])

    def record(session: str) -> logging.LogRecord:
        return logging.LogRecord(
            "bridge.x", logging.INFO, "f", 1, "session %s: bad", (session,), None
        )

    assert [limiter.filter(record("a")) for _ in range(10)] == [True] * 3 + [False] * 7
    assert limiter.filter(record("b"))
    now[0] += 1.0
    kept = record("a")
    assert limiter.filter(kept) and "7 similar lines dropped" in kept.getMessage()
