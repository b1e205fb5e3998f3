"""Wire models of protocol v1: one discriminated union per direction, keyed by `type`.

Turning frames into these models and back is `bridge.wire`'s job.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
