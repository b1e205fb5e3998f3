"""Server settings, read from `BRIDGE_*` environment variables.

Defaults come from the limit records in `bridge.limits`, so each is written once.
"""

from __future__ import annotations

import json
from dataclasses import fields
from typing import Annotated, Any, Literal, TypeVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bridge.limits import AccessLimits, ConnectionLimits, SessionLimits, ToolLimits

__all__ = ["BridgeSettings"]

_TOOL = ToolLimits()
_SESSION = SessionLimits()
_CONNECTION = ConnectionLimits()
_ACCESS = AccessLimits()


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRIDGE_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    token: SecretStr | None = Field(
        default=None, description="When set, clients must present it (Bearer header or ?token=)."
    )
    model: str | None = Field(
        default=None, description="Model name for the OpenAI-compatible endpoint, or 'offline'."
    )
    model_api: Literal["chat", "responses"] = "chat"
    allowed_origins: Annotated[list[str] | None, NoDecode] = Field(
        default=None,
        description=(
            "Web origins whose pages may connect, comma-separated or a JSON list: exact origins, "
            "scheme://host:* for any port, null, *. Unset: the server's own origin, plus "
            "http(s)://localhost|127.0.0.1|[::1] on any port when the server binds loopback."
        ),
    )
    ticket_ttl_s: float = _ACCESS.ticket_ttl_s
    max_tickets: int = _ACCESS.max_tickets
    tickets_per_principal: int = _ACCESS.tickets_per_principal
    log_frames: bool = Field(
        default=False,
        description="Log a redacted preview of every WebSocket frame at debug level.",
    )

    max_message_bytes: int = _CONNECTION.max_message_bytes
    send_queue_size: int = _CONNECTION.send_queue_size
    hello_timeout_s: float = _CONNECTION.hello_timeout_s
    heartbeat_interval_s: float = _CONNECTION.heartbeat_interval_s
    heartbeat_timeout_s: float = _CONNECTION.heartbeat_timeout_s
    send_queue_bytes: int = _CONNECTION.send_queue_bytes
    frames_per_s: float = _CONNECTION.frames_per_s
    burst_frames: int = _CONNECTION.burst_frames
    bytes_per_s: float = _CONNECTION.bytes_per_s
    burst_bytes: int = _CONNECTION.burst_bytes
    max_connections_per_address: int = _CONNECTION.max_connections_per_address
    max_new_sessions_per_minute: int = _CONNECTION.max_new_sessions_per_minute
    new_connections_per_s: float = _CONNECTION.new_connections_per_s
    burst_connections: int = _CONNECTION.burst_connections
    handshake_timeout_s: float = _CONNECTION.handshake_timeout_s
    close_timeout_s: float = _CONNECTION.close_timeout_s
    session_ttl_s: float = _SESSION.ttl_s
    redis_url: SecretStr | None = Field(
        default=None,
        description="Workers given the same Redis and cluster name serve one set of sessions.",
    )
    cluster: str = "default"
    # How long a session stays a worker's after it last renewed its claim (a dead worker's
    # sessions are taken over after this).
    owner_lease_s: float = 5.0
    # What a worker may hold in copies of the sessions it let go of, so that one coming back
    # loads only what changed since (0: keep none; see docs/scale-out.md).
    session_copies_bytes: int = 64 * 2**20
    resume_grace_s: float = _SESSION.resume_grace_s
    replay_max_messages: int = _SESSION.replay_max_messages
    replay_max_bytes: int = _SESSION.replay_max_bytes
    max_sessions: int = 50_000
    compression: bool = False
    gc_tuning: bool = Field(
        default=True,
        description="`agent-bridge serve` freezes start-up objects and raises GC thresholds.",
    )

    max_tools: int = _TOOL.max_tools
    max_description_chars: int = _TOOL.max_description_chars
    max_schema_bytes: int = _TOOL.max_schema_bytes
    max_schema_depth: int = _TOOL.max_schema_depth
    default_tool_timeout_ms: int = _TOOL.default_timeout_ms
    max_tool_timeout_ms: int = _TOOL.max_timeout_ms
    human_timeout_ms: int = _TOOL.human_timeout_ms
    progress_cap_ms: int = _SESSION.progress_cap_ms
    max_steps: int = _SESSION.max_steps
    model_step_retries: int = _SESSION.model_step_retries
    approval: Literal["destructive", "all", "none"] = Field(
        default="destructive",
        description="Which tool calls ask a person first (an app may pass its own policy).",
    )
    approval_timeout_ms: int = _SESSION.approval_timeout_ms
    max_tool_calls_per_run: int = _SESSION.max_tool_calls_per_run
    tool_failures_in_a_row: int = _SESSION.tool_failures_in_a_row
    max_queued_messages: int = _SESSION.max_queued_messages
    max_message_chars: int = _SESSION.max_message_chars
    max_conversation_turns: int = _SESSION.max_conversation_turns
    max_conversation_chars: int = _SESSION.max_conversation_chars
    max_result_chars: int = _SESSION.max_result_chars
    max_tools_per_message: int = _TOOL.max_tools_per_message
    max_registration_bytes: int = _TOOL.max_registration_bytes
    registration_bytes_per_minute: int = _TOOL.registration_bytes_per_minute
    definition_cache_bytes: int = _TOOL.definition_cache_bytes
    max_validation_ms: int = _TOOL.max_validation_ms

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: Any) -> Any:
        # From the environment: a JSON list, or the friendlier comma-separated form.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    def access_limits(self) -> AccessLimits:
        return _record(AccessLimits, self, _RENAMED)

    def tool_limits(self) -> ToolLimits:
        return _record(ToolLimits, self, _RENAMED)

    def session_limits(self) -> SessionLimits:
        return _record(SessionLimits, self, _RENAMED, tools=self.tool_limits())

    def connection_limits(self) -> ConnectionLimits:
        return _record(ConnectionLimits, self, _RENAMED)


# Record fields whose `BRIDGE_*` name says more than the field does; the rest share their name.
_RENAMED = {
    "default_timeout_ms": "default_tool_timeout_ms",
    "max_timeout_ms": "max_tool_timeout_ms",
    "ttl_s": "session_ttl_s",
}

_Record = TypeVar("_Record")


def _record(
    kind: type[_Record], settings: BridgeSettings, renamed: dict[str, str], **given: Any
) -> _Record:
    names = {renamed.get(f.name, f.name): f.name for f in fields(kind)}  # type: ignore[arg-type]
    values = {
        field: getattr(settings, name)
        for name, field in names.items()
        if field not in given and name in type(settings).model_fields
    }
    return kind(**values, **given)
