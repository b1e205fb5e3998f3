"""Server settings, read from `BRIDGE_*` environment variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bridge.agent.loop import LoopConfig
from bridge.protocol import Limits
from bridge.session import SessionLimits
from bridge.toolspec import ToolLimits

__all__ = ["BridgeSettings"]


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

    max_message_bytes: int = 1_048_576
    send_queue_size: int = 256
    hello_timeout_s: float = 10.0
    heartbeat_interval_s: float = 20.0
    heartbeat_timeout_s: float = 20.0
    session_ttl_s: float = 600.0
    resume_grace_s: float = 60.0
    replay_max_messages: int = 2048
    replay_max_bytes: int = 1_048_576
    max_sessions: int = 50_000
    compression: bool = False
    gc_tuning: bool = Field(
        default=True,
        description="`agent-bridge serve` freezes start-up objects and raises GC thresholds.",
    )

    max_tools: int = 64
    max_description_chars: int = 2048
    max_schema_bytes: int = 32_768
    max_schema_depth: int = 24
    default_tool_timeout_ms: int = 30_000
    max_tool_timeout_ms: int = 300_000
    human_timeout_ms: int = 600_000
    progress_cap_ms: int = 600_000
    max_steps: int = 8
    max_queued_messages: int = 16

    def tool_limits(self) -> ToolLimits:
        return ToolLimits(
            max_tools=self.max_tools,
            max_description_chars=self.max_description_chars,
            max_schema_bytes=self.max_schema_bytes,
            max_schema_depth=self.max_schema_depth,
            max_timeout_ms=self.max_tool_timeout_ms,
            default_timeout_ms=self.default_tool_timeout_ms,
        )

    def session_limits(self) -> SessionLimits:
        return SessionLimits(
            tools=self.tool_limits(),
            max_queued_messages=self.max_queued_messages,
            progress_cap_s=self.progress_cap_ms / 1000,
        )

    def loop_config(self) -> LoopConfig:
        return LoopConfig(
            max_steps=self.max_steps,
            default_timeout_ms=self.default_tool_timeout_ms,
            max_timeout_ms=self.max_tool_timeout_ms,
            human_timeout_ms=self.human_timeout_ms,
        )

    def wire_limits(self) -> Limits:
        return Limits(
            max_message_bytes=self.max_message_bytes,
            max_tools=self.max_tools,
            max_schema_bytes=self.max_schema_bytes,
            max_tool_timeout_ms=self.max_tool_timeout_ms,
            default_tool_timeout_ms=self.default_tool_timeout_ms,
            human_timeout_ms=self.human_timeout_ms,
            progress_cap_ms=self.progress_cap_ms,
            heartbeat_interval_ms=int(self.heartbeat_interval_s * 1000),
            heartbeat_timeout_ms=int(self.heartbeat_timeout_s * 1000),
            max_steps=self.max_steps,
            resume_grace_ms=int(self.resume_grace_s * 1000),
        )
