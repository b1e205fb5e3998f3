"""Every limit and default of the bridge, written once.

`BridgeSettings` reads the `BRIDGE_*` variables with these defaults and builds the records below;
the core takes the records and never a settings object, so it stays free of configuration I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.protocol import Limits

__all__ = ["ConnectionLimits", "SessionLimits", "ToolLimits", "wire_limits"]


@dataclass(frozen=True, slots=True)
class ToolLimits:
    """What a tool definition may be, and how long its calls may take."""

    max_tools: int = 64
    max_description_chars: int = 2048
    max_schema_bytes: int = 32_768
    max_schema_depth: int = 24
    default_timeout_ms: int = 30_000
    max_timeout_ms: int = 300_000
    # Interactive tools wait on a person, not a machine: their own clock, and a longer one.
    human_timeout_ms: int = 600_000


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one session may hold and how long it outlives its connection."""

    tools: ToolLimits = field(default_factory=ToolLimits)
    max_queued_messages: int = 16
    max_message_chars: int = 100_000
    progress_cap_ms: int = 600_000
    max_steps: int = 8
    resume_grace_s: float = 60.0
    replay_max_messages: int = 2048
    replay_max_bytes: int = 1_048_576
    ttl_s: float = 600.0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one WebSocket may send and how fast it must answer."""

    max_message_bytes: int = 1_048_576
    send_queue_size: int = 256
    hello_timeout_s: float = 10.0
    heartbeat_interval_s: float = 20.0
    heartbeat_timeout_s: float = 20.0


def wire_limits(session: SessionLimits, connection: ConnectionLimits) -> Limits:
    """The limits a client is told in `ready`."""
    tools = session.tools
    return Limits(
        max_message_bytes=connection.max_message_bytes,
        max_tools=tools.max_tools,
        max_schema_bytes=tools.max_schema_bytes,
        max_tool_timeout_ms=tools.max_timeout_ms,
        default_tool_timeout_ms=tools.default_timeout_ms,
        human_timeout_ms=tools.human_timeout_ms,
        progress_cap_ms=session.progress_cap_ms,
        heartbeat_interval_ms=int(connection.heartbeat_interval_s * 1000),
        heartbeat_timeout_ms=int(connection.heartbeat_timeout_s * 1000),
        max_steps=session.max_steps,
        resume_grace_ms=int(session.resume_grace_s * 1000),
    )
