"""One exception tree for the bridge, with its mapping to wire error codes and close codes.

BridgeError                 base; `code` is the wire error code
├── ProtocolError           a client message the server cannot act on: `error`, the
│                           connection stays open
├── ToolDefinitionError     a tool definition refused at registration: listed in
│                           `rejected`, the other definitions still register
├── ModelError              the model could not answer: `error` with a `model_*` code, the
│                           run ends `error`, the session lives on
└── ConnectionRefused       the connection must close with `close_code` (a broken limit,
                            a refused protocol version, a refused resume), after an
                            optional `error` message
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "BridgeError",
    "CloseCode",
    "ConnectionRefused",
    "ErrorCode",
    "ModelError",
    "ProtocolError",
    "ToolDefinitionError",
]


class ErrorCode(StrEnum):
    """Codes carried by the `error` message; stable, documented in docs/protocol.md."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_TYPE = "unknown_type"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    HELLO_REQUIRED = "hello_required"
    ALREADY_GREETED = "already_greeted"
    UNSUPPORTED_PROTOCOL = "unsupported_protocol"
    UNKNOWN_CALL = "unknown_call"
    DUPLICATE_RESPONSE = "duplicate_response"
    UNKNOWN_TOOL = "unknown_tool"
    INVALID_TOOL = "invalid_tool"
    TOO_MANY_TOOLS = "too_many_tools"
    DUPLICATE_TOOL = "duplicate_tool"
    NETWORK_REF = "network_ref"
    NO_ACTIVE_RUN = "no_active_run"
    QUEUE_FULL = "queue_full"
    UNKNOWN_APPROVAL = "unknown_approval"
    INVALID_ARGUMENTS = "invalid_arguments"
    RESUME_DENIED = "resume_denied"
    RATE_LIMITED = "rate_limited"
    SESSION_EXPIRED = "session_expired"
    MODEL_ERROR = "model_error"
    MODEL_AUTH = "model_auth"
    MODEL_PERMISSION = "model_permission"
    MODEL_RATE_LIMITED = "model_rate_limited"
    MODEL_UNAVAILABLE = "model_unavailable"
    MODEL_TIMEOUT = "model_timeout"
    MODEL_CONNECTION = "model_connection"
    MODEL_BAD_REQUEST = "model_bad_request"
    MODEL_TRUNCATED = "model_truncated"
    MODEL_BAD_RESPONSE = "model_bad_response"
    MODEL_INCOMPLETE = "model_incomplete"
    INTERNAL = "internal_error"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses; each breach of a limit has its own."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL = 1011
    # The session moved to another worker (a connection of its client arrived there): come
    # back at once, any worker serves it. Not "replaced", which tells a client to stay away.
    MOVED = 1012
    BUSY = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    HEARTBEAT_TIMEOUT = 4408
    REPLACED = 4409
    # Too many frames, bytes, connections or new sessions from this client: back off.
    TOO_MANY = 4429


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ProtocolError(BridgeError):
    """A client message the server cannot act on; answered with `error`, the connection lives."""

    code = ErrorCode.INVALID_MESSAGE


class ToolDefinitionError(BridgeError):
    """A tool definition refused at registration; reported in `rejected`, others still register."""

    code = ErrorCode.INVALID_TOOL


class ModelError(BridgeError):
    """The model could not answer; the run ends with `error`, the session lives on.

    `broken_stream` says the answer had started and then broke (dropped, stalled, cut short,
    undecodable): asking again may well succeed, which the loop does within its retry budget.
    `transient` says a new request could succeed later (a 429, a 5xx, a refused connection)
    although this one never started; `retry_after_s` is the wait the server asked for.
    """

    code = ErrorCode.MODEL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        broken_stream: bool = False,
        transient: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.broken_stream = broken_stream
        self.transient = transient or broken_stream
        self.retry_after_s = retry_after_s


class ConnectionRefused(BridgeError):
    """The connection closes with `close_code`; `code` is the `error` sent before, if any."""

    code = ErrorCode.INVALID_MESSAGE

    def __init__(
        self, message: str, *, close_code: CloseCode, code: ErrorCode | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.close_code = close_code
        self.tell_client = code is not None
