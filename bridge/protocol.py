"""Wire models of protocol v1: one discriminated union per direction, keyed by `type`.

Parsing lives here and nowhere else, so every malformed frame maps to one `ProtocolError`
code before any state is touched.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from bridge.errors import ErrorCode, ProtocolError

__all__ = [
    "PROTOCOL_VERSION",
    "ApprovalRequestMessage",
    "ApprovalResponseMessage",
    "ByeMessage",
    "CancelCallMessage",
    "ClientMessage",
    "CompleteMessage",
    "CompleteReason",
    "ErrorMessage",
    "HelloMessage",
    "Limits",
    "PingMessage",
    "PongMessage",
    "ReadyMessage",
    "RegisterToolsMessage",
    "RejectedTool",
    "ResponseStatus",
    "ResumeRequest",
    "Resumed",
    "RunStartedMessage",
    "ServerMessage",
    "SnapshotCall",
    "SnapshotMessage",
    "SnapshotRun",
    "SnapshotTurn",
    "StepRetryMessage",
    "StopMessage",
    "TokenMessage",
    "ToolCancelMessage",
    "ToolError",
    "ToolProgressMessage",
    "ToolRequestMessage",
    "ToolResponseMessage",
    "ToolResultMessage",
    "ToolsReport",
    "ToolsUpdatedMessage",
    "UnregisterToolsMessage",
    "Usage",
    "UserMessage",
    "dump_server_message",
    "parse_client_message",
    "parse_server_message",
    "protocol_json_schema",
]

PROTOCOL_VERSION = 1

ResponseStatus = Literal["ok", "error", "denied", "outcome_unknown"]
ResultStatus = Literal[
    "ok",
    "error",
    "invalid_arguments",
    "denied",
    "timed_out",
    "cancelled",
    "outcome_unknown",
    "approval_expired",
]
CompleteReason = Literal["done", "stopped", "max_steps", "tool_budget", "error", "disconnected"]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ToolError(_Wire):
    """Why a tool did not produce a result."""

    message: str = Field(max_length=16_384)
    code: str | None = Field(default=None, max_length=128)


# Client to server -----------------------------------------------------------------------------


class ResumeRequest(_Wire):
    """Proof that the session is the client's own, and the last `seq` it processed."""

    token: str = Field(max_length=256)
    last_seq: int = Field(default=0, ge=0)


class HelloMessage(_Wire):
    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    # Each definition is checked on its own by toolspec so one bad tool never sinks the rest.
    tools: list[dict[str, Any]] = Field(default_factory=list)
    client: str | None = Field(default=None, max_length=256)
    resume: ResumeRequest | None = None


class ByeMessage(_Wire):
    """The client leaves for good: the session ends now instead of being held for a resume."""

    type: Literal["bye"] = "bye"


class RegisterToolsMessage(_Wire):
    type: Literal["register_tools"] = "register_tools"
    tools: list[dict[str, Any]]


class UnregisterToolsMessage(_Wire):
    type: Literal["unregister_tools"] = "unregister_tools"
    # Unknown names are named back in the error, so neither the list nor a name is unbounded.
    names: list[Annotated[str, Field(max_length=128)]] = Field(max_length=1024)


class UserMessage(_Wire):
    type: Literal["message"] = "message"
    content: str


class StopMessage(_Wire):
    type: Literal["stop"] = "stop"


class ToolResponseMessage(_Wire):
    type: Literal["tool_response"] = "tool_response"
    id: str = Field(max_length=128)
    status: ResponseStatus = "ok"
    result: Any = None
    error: ToolError | None = None


class ApprovalResponseMessage(_Wire):
    """A person's answer to an `approval_request`, bound to the server's own call id."""

    type: Literal["approval_response"] = "approval_response"
    id: str = Field(max_length=128)
    decision: Literal["approve", "deny"]
    reason: str | None = Field(default=None, max_length=4096)
    # Edited arguments, validated against the tool's schema again before the call is made.
    arguments: dict[str, Any] | None = None
    remember: Literal["session"] | None = None


class CancelCallMessage(_Wire):
    """The person cancels one call (its card's cancel button); the run goes on without it."""

    type: Literal["cancel_call"] = "cancel_call"
    id: str = Field(max_length=128)


class ToolProgressMessage(_Wire):
    type: Literal["tool_progress"] = "tool_progress"
    id: str = Field(max_length=128)
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    message: str | None = Field(default=None, max_length=4096)


# A client's nonce comes back in `pong`: capped, so a ping cannot make the server send 1 MB.
_MAX_NONCE = 256


class PingMessage(_Wire):
    type: Literal["ping"] = "ping"
    nonce: str | None = Field(default=None, max_length=_MAX_NONCE)


class PongMessage(_Wire):
    type: Literal["pong"] = "pong"
    nonce: str | None = Field(default=None, max_length=_MAX_NONCE)


ClientMessage = Annotated[
    HelloMessage
    | RegisterToolsMessage
    | UnregisterToolsMessage
    | UserMessage
    | StopMessage
    | ToolResponseMessage
    | ToolProgressMessage
    | PingMessage
    | PongMessage
    | ByeMessage
    | ApprovalResponseMessage
    | CancelCallMessage,
    Field(discriminator="type"),
]

# Server to client -----------------------------------------------------------------------------


class _ServerWire(_Wire):
    # Not frozen: the session's outbound log stamps `seq` when the message is pushed. Messages
    # that belong to one connection rather than to the session (`ready`, `snapshot`, answers
    # before `hello`) carry none, so a replay that follows them keeps its original numbers.
    model_config = ConfigDict(extra="ignore", frozen=False)

    seq: int | None = None


class RejectedTool(_Wire):
    # Absent when the definition had no usable name (not a string, or not there at all).
    name: str | None = None
    code: str
    reason: str


class ToolsReport(_Wire):
    accepted: list[str]
    rejected: list[RejectedTool]


class Limits(_Wire):
    max_message_bytes: int
    max_tools: int
    max_schema_bytes: int
    max_tool_timeout_ms: int
    default_tool_timeout_ms: int
    human_timeout_ms: int
    progress_cap_ms: int
    heartbeat_interval_ms: int
    heartbeat_timeout_ms: int
    max_steps: int
    resume_grace_ms: int


class Resumed(_Wire):
    """How a resume went: replay starts at `from_seq`, or `gap` and a `snapshot` follows."""

    from_seq: int
    pending_calls: list[str] = Field(default_factory=list)
    pending_approvals: list[str] = Field(default_factory=list)
    gap: bool = False


class ReadyMessage(_ServerWire):
    type: Literal["ready"] = "ready"
    session_id: str
    protocol: int = PROTOCOL_VERSION
    tools: ToolsReport
    server_tools: list[str] = Field(default_factory=list)
    limits: Limits
    resume_token: str | None = None
    resumed: Resumed | None = None


class SnapshotCall(_Wire):
    """One tool call of the conversation as the client saw it (wire id), with its outcome."""

    id: str
    name: str
    arguments: Any = None
    status: ResultStatus | Literal["pending"] = "pending"
    result: Any = None
    error: str | None = None


class SnapshotTurn(_Wire):
    role: Literal["user", "assistant"]
    content: str
    run_id: str | None = None
    tool_calls: list[SnapshotCall] = Field(default_factory=list)


class SnapshotRun(_Wire):
    run_id: str
    content: str = ""


class SnapshotMessage(_ServerWire):
    """Sent after `ready` when the replay window cannot bridge the client's gap."""

    type: Literal["snapshot"] = "snapshot"
    last_seq: int
    turns: list[SnapshotTurn] = Field(default_factory=list)
    run: SnapshotRun | None = None
    pending_calls: list[str] = Field(default_factory=list)
    pending_approvals: list[str] = Field(default_factory=list)


class ToolsUpdatedMessage(_ServerWire):
    type: Literal["tools_updated"] = "tools_updated"
    tools: ToolsReport
    removed: list[str] = Field(default_factory=list)
    active: list[str] = Field(default_factory=list)


class RunStartedMessage(_ServerWire):
    type: Literal["run_started"] = "run_started"
    run_id: str
    content: str


class TokenMessage(_ServerWire):
    type: Literal["token"] = "token"
    run_id: str
    content: str


class ToolRequestMessage(_ServerWire):
    type: Literal["tool_request"] = "tool_request"
    id: str
    run_id: str
    name: str
    arguments: dict[str, Any]
    timeout_ms: int
    interactive: bool = False
    # Sent again to a client that resumed; the id is the same, so a client that already
    # ran the handler re-sends its stored result instead of running it twice.
    redelivered: bool | None = None


class ApprovalRequestMessage(_ServerWire):
    """A person must approve this call before it runs; `id` is the call's own id."""

    type: Literal["approval_request"] = "approval_request"
    id: str
    run_id: str
    name: str
    arguments: dict[str, Any]
    reason: str
    # Wall-clock time (ms since the epoch) after which the call ends `approval_expired`.
    expires_at: int
    # Sent again to a client that resumed, with the same id.
    redelivered: bool | None = None


class StepRetryMessage(_ServerWire):
    """The text streamed so far in this step is void: the model's step is being made again."""

    type: Literal["step_retry"] = "step_retry"
    run_id: str
    step: int
    attempt: int
    reason: str


class ToolCancelMessage(_ServerWire):
    type: Literal["tool_cancel"] = "tool_cancel"
    id: str
    reason: str


class ToolResultMessage(_ServerWire):
    """The terminal result of one tool call, client or server side, for display."""

    type: Literal["tool_result"] = "tool_result"
    id: str
    run_id: str
    name: str
    status: ResultStatus
    source: Literal["client", "server", "unknown"] = "client"
    result: Any = None
    error: str | None = None


class Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class CompleteMessage(_ServerWire):
    type: Literal["complete"] = "complete"
    run_id: str
    reason: CompleteReason
    steps: int = 0
    usage: Usage | None = None


class ErrorMessage(_ServerWire):
    type: Literal["error"] = "error"
    code: str
    message: str
    id: str | None = None
    run_id: str | None = None


class ServerPingMessage(_ServerWire):
    type: Literal["ping"] = "ping"
    nonce: str | None = None


class ServerPongMessage(_ServerWire):
    type: Literal["pong"] = "pong"
    nonce: str | None = None


ServerMessage = Annotated[
    ReadyMessage
    | SnapshotMessage
    | StepRetryMessage
    | ApprovalRequestMessage
    | ToolsUpdatedMessage
    | RunStartedMessage
    | TokenMessage
    | ToolRequestMessage
    | ToolCancelMessage
    | ToolResultMessage
    | CompleteMessage
    | ErrorMessage
    | ServerPingMessage
    | ServerPongMessage,
    Field(discriminator="type"),
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
