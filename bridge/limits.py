"""Every limit and default of the bridge, written once.

`BridgeSettings` reads the `BRIDGE_*` variables with these defaults and builds the records below;
the core takes the records and never a settings object, so it stays free of configuration I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.protocol import Limits

__all__ = ["AccessLimits", "ConnectionLimits", "SessionLimits", "ToolLimits", "wire_limits"]


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
    # Checking definitions is work on the event loop, so what one client may make it check is
    # bounded: per message, and per session over any minute (a token bucket).
    # A longer batch is refused in one rejection before any definition is looked at.
    max_tools_per_message: int = 64
    max_registration_bytes: int = 262_144
    registration_bytes_per_minute: int = 1_048_576
    # Definitions already checked are kept for the next session; this bounds their text.
    definition_cache_bytes: int = 8_388_608
    # Time one argument or result check may take: a small schema can still branch
    # exponentially (nested anyOf through $ref), and the check runs on the event loop.
    max_validation_ms: int = 25


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one session may hold and how long it outlives its connection."""

    tools: ToolLimits = field(default_factory=ToolLimits)
    max_queued_messages: int = 16
    max_message_chars: int = 100_000
    progress_cap_ms: int = 600_000
    max_steps: int = 8
    # A model step whose stream broke after it started is made again this many times.
    model_step_retries: int = 2
    # A person answering an approval request is on the human clock.
    approval_timeout_ms: int = 600_000
    # The loop guard: tool calls one run may make, and failures in a row that stop one tool.
    max_tool_calls_per_run: int = 64
    tool_failures_in_a_row: int = 3
    resume_grace_s: float = 60.0
    # Enough for what is sent while a drop goes unnoticed (the send queue's worth, and a held
    # session's coalesced tokens), small enough for thousands of sessions (docs/benchmarks.md).
    replay_max_messages: int = 512
    replay_max_bytes: int = 262_144
    ttl_s: float = 600.0
    # The conversation the model reads: past these, the oldest exchanges are dropped whole, and
    # a longer tool result is cut with a marker (policy in bridge/conversation.py).
    max_conversation_turns: int = 1_000
    max_conversation_chars: int = 2_000_000
    max_result_chars: int = 100_000


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one WebSocket may send and how fast it must answer."""

    max_message_bytes: int = 1_048_576
    send_queue_size: int = 256
    hello_timeout_s: float = 10.0
    heartbeat_interval_s: float = 20.0
    heartbeat_timeout_s: float = 20.0
    # Frames waiting on a connection before its hello (answers to pings, errors): beyond
    # these the client is not reading and is closed.
    send_queue_bytes: int = 1_048_576
    # Token buckets per connection: sustained rate and burst, in frames and in bytes.
    frames_per_s: float = 100.0
    burst_frames: int = 200
    bytes_per_s: float = 1_048_576.0
    burst_bytes: int = 4_194_304
    # Per client address (the proxy's, unless uvicorn is told to trust its forwarded headers).
    max_connections_per_address: int = 256
    max_new_sessions_per_minute: int = 60
    # New WebSockets per address: a burst that can fill the open-connection cap at once (a
    # whole office reconnecting after a restart), then a steady rate far above one client's.
    new_connections_per_s: float = 10.0
    burst_connections: int = 256
    # From TCP accept to a complete HTTP request head; uvicorn alone waits forever.
    handshake_timeout_s: float = 10.0
    # After our close frame: how long a peer that does not read gets before the socket is cut.
    close_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class AccessLimits:
    """WebSocket tickets (bridge/server/tickets.py): how long one is good, and how many wait."""

    # Long enough for a page to fetch a ticket and open its socket, short enough that a ticket
    # seen in a log or a proxy is useless by the time anyone reads it (and it is single use).
    ticket_ttl_s: float = 30.0
    max_tickets: int = 10_000
    # A principal asking for more retires its oldest, so one client cannot fill the book.
    tickets_per_principal: int = 16


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
