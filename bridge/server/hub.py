"""Which sessions exist, which connection each has, and how long each is held without one.

A session is created by a valid `hello`, never by a bare socket. When its connection leaves,
the session is held for the resume grace with its run going on; a client that comes back with
the session's `resume_token` carries on where it left off. When the grace ends with nobody
back, the run ends as `disconnected`, the live runtime is let go and the session's record goes
to the store until its time to live; a later client is served from that record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from bridge.agent.runtime import SessionRuntime
from bridge.agent.server_tools import ServerTools
from bridge.approvals import ApprovalPolicy
from bridge.errors import CloseCode, ConnectionRefused, ErrorCode
from bridge.limits import SessionLimits
from bridge.models.base import Model
from bridge.protocol import PROTOCOL_VERSION, ErrorMessage, HelloMessage, Limits
from bridge.server.cluster import Cluster
from bridge.server.connection import Connection
from bridge.session import ResumePlan, Session
from bridge.store import MemoryStore, SessionStore

__all__ = ["SessionHub"]

log = logging.getLogger(__name__)

_REPLACE_WAIT_S = 5.0


class SessionHub:
    def __init__(
        self,
        *,
        limits: SessionLimits,
        wire_limits: Limits,
        queue_size: int,
        server_tools: ServerTools,
        approval: ApprovalPolicy | None = None,
        model_for: Callable[[str], Model],
        max_sessions: int,
        store: SessionStore | None = None,
        cluster: Cluster | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._limits = limits
        self._wire_limits = wire_limits
        self._queue_size = queue_size
        self._server_tools = server_tools
        self._approval = approval
        self._model_for = model_for
        self._max_sessions = max_sessions
        self.store: SessionStore = store if store is not None else MemoryStore()
        # With a cluster, other workers may carry a session on: runs store their record as
        # they go, and a session lives in the worker its client's connection is on.
        self._cluster = cluster
        self._wall_clock = wall_clock
        self._runtimes: dict[str, SessionRuntime] = {}
        self._connections: dict[str, Connection] = {}
        self._held: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._runtimes)

    @property
    def connected(self) -> int:
        return len(self._connections)

    @property
    def held(self) -> int:
        return len(self._held)

    def runtime(self, session_id: str) -> SessionRuntime | None:
        """The live session by id (for callers other than a connection: tests, other endpoints)."""
        return self._runtimes.get(session_id)

    # Arrival -----------------------------------------------------------------------------------

    async def greet(
        self, connection: Connection, hello: HelloMessage
    ) -> tuple[SessionRuntime, list[BaseModel]]:
        """Attach a connection to its session after a valid hello; create the session if new."""
        if hello.protocol != PROTOCOL_VERSION:
            raise ConnectionRefused(
                f"this server speaks protocol {PROTOCOL_VERSION}",
                close_code=CloseCode.POLICY,
                code=ErrorCode.UNSUPPORTED_PROTOCOL,
            )
        session_id = connection.session_id
        try:
            runtime = self._runtimes.get(session_id)
            session = runtime.session if runtime is not None else await self._stored(session_id)
            if session is not None:
                _authorise(session, connection, hello)
            if runtime is None and self._cluster is not None:
                await self._claim(session_id)
                # What the worker that had it stored when it let go.
                session = await self._stored(session_id)
        except ConnectionError:
            raise ConnectionRefused(
                "the session store cannot be reached; try again later", close_code=CloseCode.BUSY
            ) from None
        if session is None:
            return self._start(connection, hello)
        assert hello.resume is not None  # `_authorise` let only a resume through
        plan = session.resume_plan(hello.resume)
        taken_over = runtime is None
        if runtime is None:
            runtime = self._create(session)
        await self._take_over(session_id, connection)
        ready, snapshot = runtime.resume(
            hello.tools, plan, hello.resume.last_seq, connection.notify
        )
        if taken_over:
            runtime.take_over()
        return runtime, [ready] if snapshot is None else [ready, snapshot]

    async def _claim(self, session_id: str) -> None:
        assert self._cluster is not None
        self._cluster.start(self._hand_over, self._lost)
        if not await self._cluster.claim(session_id):
            raise ConnectionRefused(
                "the session is busy on another worker; try again", close_code=CloseCode.BUSY
            )

    def _start(
        self, connection: Connection, hello: HelloMessage
    ) -> tuple[SessionRuntime, list[BaseModel]]:
        """A new session, owned by the connection's principal."""
        session_id = connection.session_id
        clock, specs = self._wall_clock, self._server_tools.specs
        session = Session(session_id, clock=clock, limits=self._limits, server_tools=specs)
        session.owner = connection.principal.id
        runtime = self._create(session)
        self._connections[session_id] = connection
        ready = runtime.greet(hello.tools, connection.notify)
        if hello.resume is None:
            return runtime, [ready]
        expired = ErrorMessage(
            code=ErrorCode.SESSION_EXPIRED,
            message="the session no longer exists; a new one was started",
        )
        return runtime, [ready, expired]

    async def _stored(self, session_id: str) -> Session | None:
        record = await self.store.get(session_id)
        if record is None:
            return None
        clock, specs = self._wall_clock, self._server_tools.specs
        return Session.load(record, clock=clock, limits=self._limits, server_tools=specs)

    def _create(self, session: Session) -> SessionRuntime:
        if len(self._runtimes) >= self._max_sessions:
            raise ConnectionRefused("the server is at its session limit", close_code=CloseCode.BUSY)
        runtime = SessionRuntime(
            session,
            self._model_for(session.id),
            limits=self._wire_limits,
            queue_size=self._queue_size,
            server_tools=self._server_tools,
            approval=self._approval,
            store=self._put if self._cluster is not None else None,
        )
        self._runtimes[session.id] = runtime
        return runtime

    async def _put(self, session: Session) -> None:
        await self.store.put(session.id, session.dump(), self._limits.ttl_s)

    async def _hand_over(self, session_id: str) -> None:
        """Another worker has this session's client now: stop here without ending anything,
        store the record and let the lease go."""
        assert self._cluster is not None
        timer = self._held.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        runtime = self._runtimes.pop(session_id, None)
        connection = self._connections.pop(session_id, None)
        if connection is not None:
            connection.finish(CloseCode.REPLACED, "the session moved to another worker")
        if runtime is not None:
            if connection is not None:
                runtime.outbox.detach(connection.notify)
            await runtime.hand_over()
            await runtime.checkpoint()
        await self._cluster.release(session_id)

    async def _lost(self, session_id: str) -> None:
        """The lease went to another worker while this one still ran the session (it could not
        renew in time): stop at once, storing nothing, as the other worker goes on from the
        record."""
        runtime = self._runtimes.pop(session_id, None)
        connection = self._connections.pop(session_id, None)
        if connection is not None:
            connection.finish(CloseCode.REPLACED, "the session moved to another worker")
        if runtime is not None:
            await runtime.hand_over()

    async def _take_over(self, session_id: str, connection: Connection) -> None:
        timer = self._held.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        previous = self._connections.get(session_id)
        self._connections[session_id] = connection
        if previous is not None and previous is not connection:
            previous.finish(CloseCode.REPLACED, "replaced by a newer connection")
            await previous.wait_closed(_REPLACE_WAIT_S)

    # Departure ---------------------------------------------------------------------------------

    async def leave(self, connection: Connection, for_good: bool) -> None:
        """A connection is gone; hold its session for a resume, or end it after `bye`."""
        session_id = connection.session_id
        if self._connections.get(session_id) is not connection:
            return
        del self._connections[session_id]
        runtime = self._runtimes.get(session_id)
        if runtime is None:
            return
        runtime.outbox.detach(connection.notify)
        if for_good:
            del self._runtimes[session_id]
            await runtime.end("disconnected")
            await self.store.delete(session_id)
            if self._cluster is not None:
                await self._cluster.release(session_id)
            return
        loop = asyncio.get_running_loop()
        self._held[session_id] = loop.call_later(
            self._limits.resume_grace_s, self._grace_over, session_id
        )

    def _grace_over(self, session_id: str) -> None:
        self._held.pop(session_id, None)
        runtime = self._runtimes.get(session_id)
        if runtime is None or session_id in self._connections:
            return
        task = asyncio.get_running_loop().create_task(self._retire(session_id, runtime))
        task.add_done_callback(_log_failure)

    async def _retire(self, session_id: str, runtime: SessionRuntime) -> None:
        """Nobody came back in time: end the run and keep only the session's record."""
        await runtime.end("disconnected")
        if session_id in self._connections or self._runtimes.get(session_id) is not runtime:
            return
        await self.store.put(session_id, runtime.session.dump(), self._limits.ttl_s)
        if session_id not in self._connections and self._runtimes.get(session_id) is runtime:
            del self._runtimes[session_id]
            if self._cluster is not None:
                await self._cluster.release(session_id)

    async def close(self) -> None:
        """Server shutdown: end every session's run."""
        for timer in self._held.values():
            timer.cancel()
        self._held.clear()
        if self._cluster is not None:
            # Another worker carries these sessions on: hand them over rather than end them.
            for session_id in list(self._runtimes):
                await self._hand_over(session_id)
            await self._cluster.stop()
            return
        runtimes = list(self._runtimes.values())
        self._runtimes.clear()
        await asyncio.gather(*(r.end("disconnected") for r in runtimes), return_exceptions=True)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("ending a held session failed", exc_info=task.exception())


def _authorise(session: Session, connection: Connection, hello: HelloMessage) -> None:
    """Only the session's owner, with its resume token, attaches to an existing session. The
    refusal says the same whatever failed, so it tells a stranger nothing of the session."""
    if (
        hello.resume is None
        or session.owner not in (None, connection.principal.id)
        or session.resume_plan(hello.resume) is ResumePlan.DENIED
    ):
        raise ConnectionRefused(
            "this session exists; only its owner may attach to it, with its resume token",
            close_code=CloseCode.FORBIDDEN,
            code=ErrorCode.RESUME_DENIED,
        )
