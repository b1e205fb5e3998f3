"""Frames to wire models and back: the one place a client frame is parsed and a server message
serialised, so every malformed frame maps to one `ProtocolError` code before any state is
touched, and no server message can fail to go out.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from bridge.errors import ErrorCode, ProtocolError
from bridge.protocol import PROTOCOL_VERSION, ClientMessage, ServerMessage

__all__ = [
    "dump_server_message",
    "parse_client_message",
    "parse_server_message",
    "protocol_json_schema",
]

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
_KNOWN_CLIENT_TYPES = frozenset(
    {
        "hello",
        "register_tools",
        "unregister_tools",
        "message",
        "stop",
        "tool_response",
        "tool_progress",
        "ping",
        "pong",
        "bye",
        "approval_response",
        "cancel_call",
    }
)


# JSON may spell a lone UTF-16 surrogate (`"\ud83d"`); Python decodes it, and nothing can
# encode it again, so one such string would break every later frame and model request that
# carries it. Every client string is cleaned at parse, U+FFFD in place of each lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_ECHO = 64
_MAX_ERROR = 1024


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one client frame; raise `ProtocolError` with the precise code when it is unusable.

    Nothing a client sends makes this raise anything else: deep nesting, a `type` that is not a
    string and lone surrogates all have their answer.
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise ProtocolError(
            "frame is not valid JSON: it nests too deeply", code=ErrorCode.INVALID_JSON
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(
            _clip(f"frame is not valid JSON: {exc}"), code=ErrorCode.INVALID_JSON
        ) from None
    if not isinstance(data, dict):
        raise ProtocolError(
            f"a message must be a JSON object, got {type(data).__name__}",
            code=ErrorCode.INVALID_MESSAGE,
        )
    if _may_hold_surrogates(text):
        _replace_surrogates(data)
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _KNOWN_CLIENT_TYPES:
        raise ProtocolError(f"unknown message type {_echo(kind)}", code=ErrorCode.UNKNOWN_TYPE)
    try:
        return _client_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc, kind), code=ErrorCode.INVALID_MESSAGE) from None
    except RecursionError:
        raise ProtocolError(
            f"invalid {kind} message: it nests too deeply", code=ErrorCode.INVALID_MESSAGE
        ) from None


def _echo(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= _MAX_ECHO else shown[:_MAX_ECHO] + "..."


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "..."


def _may_hold_surrogates(text: str | bytes) -> bool:
    if isinstance(text, bytes):
        return _SURROGATE_ESCAPE_BYTES.search(text) is not None
    return _SURROGATE_ESCAPE.search(text) is not None


def _replace_surrogates(data: dict[str, Any]) -> None:
    """Clean every string of a parsed frame in place, keys too; a loop, since nesting is deep."""
    stack: list[dict[str, Any] | list[Any]] = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
            node.clear()
            for key, value in items:
                if isinstance(value, str):
                    value = _SURROGATE.sub("\ufffd", value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)
                node[_SURROGATE.sub("\ufffd", key)] = value
        else:
            for index, value in enumerate(node):
                if isinstance(value, str):
                    node[index] = _SURROGATE.sub("\ufffd", value)
                elif isinstance(value, (dict, list)):
                    stack.append(value)


def _describe(exc: ValidationError, kind: object) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:5]:
        loc = (
            ".".join(
                _echo(p) if isinstance(p, str) and len(p) > _MAX_ECHO else str(p)
                for p in err["loc"][1:]
            )
            or "message"
        )
        parts.append(f"{loc}: {err['msg']}")
    return _clip(f"invalid {kind} message: " + "; ".join(parts))


# Depth past which a value in a server message is replaced: clients parse with their own limits.
_MAX_DUMP_DEPTH = 64


def dump_server_message(message: BaseModel) -> str:
    """Serialise a server message for the wire, leaving out fields that are unset.

    Never raises: a value that cannot be encoded (a lone surrogate, NaN, an object that is not
    JSON, nesting past any parser's limit) is replaced, and the frame still goes out.
    """
    try:
        return message.model_dump_json(exclude_none=True)
    except (PydanticSerializationError, ValueError, TypeError, RecursionError):
        pass
    try:
        data = message.model_dump(mode="python", exclude_none=True)
        return json.dumps(
            _jsonable(data, 0), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except (ValueError, TypeError, RecursionError):
        seq = getattr(message, "seq", None)
        frame: dict[str, Any] = {
            "type": "error",
            "code": ErrorCode.INTERNAL.value,
            "message": f"a {getattr(message, 'type', 'server')} message could not be encoded",
        }
        if seq is not None:
            frame["seq"] = seq
        return json.dumps(frame)


def _jsonable(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DUMP_DEPTH:
        return "[nested too deeply]"
    if isinstance(value, dict):
        return {_jsonable(str(k), depth): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="python", exclude_none=True), depth)
    return _SURROGATE.sub("\ufffd", f"[{type(value).__name__}]")


def parse_server_message(text: str | bytes) -> ServerMessage:
    """Parse a server frame (used by clients and tests)."""
    return _server_adapter.validate_json(text)


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema of protocol v1, both directions (committed as docs/protocol.schema.json)."""
    client = _client_adapter.json_schema(mode="validation")
    server = _server_adapter.json_schema(mode="serialization")
    defs: dict[str, Any] = {}
    defs.update(client.pop("$defs", {}))
    defs.update(server.pop("$defs", {}))
    defs["ClientMessage"] = client
    defs["ServerMessage"] = server
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "agent-bridge/protocol/v1",
        "title": f"agent-bridge protocol v{PROTOCOL_VERSION}",
        "oneOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
        "$defs": dict(sorted(defs.items())),
    }
