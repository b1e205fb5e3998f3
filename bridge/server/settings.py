"""Server settings, read from `BRIDGE_*` environment variables.

Defaults come from the limit records in `bridge.limits`, so each is written once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.limits import ConnectionLimits, SessionLimits, ToolLimits

__all__ = ["BridgeSettings"]

_TOOL = ToolLimits()
_SESSION = SessionLimits()
_CONNECTION = ConnectionLimits()


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

    max_message_bytes: int = _CONNECTION.max_message_bytes
    send_queue_size: int = _CONNECTION.send_queue_size
    hello_timeout_s: float = _CONNECTION.hello_timeout_s
    heartbeat_interval_s: float = _CONNECTION.heartbeat_interval_s
    heartbeat_timeout_s: float = _CONNECTION.heartbeat_timeout_s
    session_ttl_s: float = _SESSION.ttl_s
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
    max_queued_messages: int = _SESSION.max_queued_messages

    def tool_limits(self) -> ToolLimits:
        return ToolLimits(
            max_tools=self.max_tools,
            max_description_chars=self.max_description_chars,
            max_schema_bytes=self.max_schema_bytes,
            max_schema_depth=self.max_schema_depth,
            default_timeout_ms=self.default_tool_timeout_ms,
            max_timeout_ms=self.max_tool_timeout_ms,
            human_timeout_ms=self.human_timeout_ms,
        )

    def session_limits(self) -> SessionLimits:
        return SessionLimits(
            tools=self.tool_limits(),
            max_queued_messages=self.max_queued_messages,
            progress_cap_ms=self.progress_cap_ms,
            max_steps=self.max_steps,
            resume_grace_s=self.resume_grace_s,
            replay_max_messages=self.replay_max_messages,
            replay_max_bytes=self.replay_max_bytes,
            ttl_s=self.session_ttl_s,
        )

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(
            max_message_bytes=self.max_message_bytes,
            send_queue_size=self.send_queue_size,
            hello_timeout_s=self.hello_timeout_s,
            heartbeat_interval_s=self.heartbeat_interval_s,
            heartbeat_timeout_s=self.heartbeat_timeout_s,
        )
