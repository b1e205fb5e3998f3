"""Which sessions exist and which connection holds each: a newer connection replaces an older."""

from __future__ import annotations

import time
from collections.abc import Callable

from bridge.errors import CloseCode
from bridge.server.connection import Connection
from bridge.session import Session, SessionLimits
from bridge.toolspec import ToolSpec

__all__ = ["SessionHub"]

_REPLACE_WAIT_S = 5.0


class SessionHub:
    """Keeps session state across reconnects for `ttl_s` after the last connection left."""

    def __init__(
        self,
        *,
        limits: SessionLimits,
        server_tools: dict[str, ToolSpec],
        ttl_s: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._server_tools = server_tools
        self._ttl_s = ttl_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._connections: dict[str, Connection] = {}
        self._left_at: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def connected(self) -> int:
        return len(self._connections)

    def session(self, session_id: str, loop_clock: Callable[[], float]) -> Session | None:
        """The session's state, created on first use; None when the server is full."""
        self._forget_expired()
        found = self._sessions.get(session_id)
        if found is None:
            if len(self._sessions) >= self._max_sessions:
                return None
            found = Session(
                session_id, clock=loop_clock, limits=self._limits, server_tools=self._server_tools
            )
            self._sessions[session_id] = found
        self._left_at.pop(session_id, None)
        return found

    async def attach(self, session_id: str, connection: Connection) -> None:
        previous = self._connections.get(session_id)
        self._connections[session_id] = connection
        if previous is not None:
            previous.finish(CloseCode.REPLACED, "replaced by a newer connection")
            await previous.wait_closed(_REPLACE_WAIT_S)

    def detach(self, session_id: str, connection: Connection) -> None:
        if self._connections.get(session_id) is connection:
            del self._connections[session_id]
            self._left_at[session_id] = self._clock()

    def _forget_expired(self) -> None:
        if not self._left_at:
            return
        cutoff = self._clock() - self._ttl_s
        for session_id in [s for s, t in self._left_at.items() if t <= cutoff]:
            del self._left_at[session_id]
            self._sessions.pop(session_id, None)
