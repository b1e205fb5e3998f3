"""Which sessions exist, which connection each has, and how long each is held without one.

A session is created by a valid `hello`, never by a bare socket. When its connection leaves,
the session is held for the resume grace with its run going on; a client that comes back with
the session's `resume_token` carries on where it left off. When the grace ends with nobody
back, the run ends as `disconnected`, the live runtime is let go and the session's record goes
to the store until its time to live; a later client is served from that record.

This is one worker on its own; `bridge.server.cluster_hub` is the same with other workers
sharing the sessions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel

from bridge.access import Access
from bridge.agent.runtime import SessionRuntime
from bridge.agent.server_tools import ServerTools
from bridge.approvals import ApprovalPolicy
from bridge.errors import CloseCode, ConnectionRefused, ErrorCode
from bridge.limits import SessionLimits
from bridge.models.base import Model
from bridge.protocol import PROTOCOL_VERSION, ErrorMessage, HelloMessage, Limits
from bridge.server.connection import Connection
from bridge.session import Session
from bridge.store import MemoryStore, SessionStore

__all__ = ["SessionHub"]

log = logging.getLogger(__name__)

REPLACE_WAIT_S = 5.0
# After a record could not be retired into the store, how long until the next attempt.
RETIRE_RETRY_S = 5.0


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
        return await self._arrive(connection, hello)

    async def _arrive(
        self, connection: Connection, hello: HelloMessage
    ) -> tuple[SessionRuntime, list[BaseModel]]:
        session_id = connection.session_id
        runtime = self._runtimes.get(session_id)
        session = runtime.session if runtime is not None else await self._stored(session_id)
        if session is not None:
            self._authorise(session.access(), connection, hello)
        return await self._attach(connection, hello, runtime, session)

    async def _attach(
        self,
        connection: Connection,
        hello: HelloMessage,
        runtime: SessionRuntime | None,
        session: Session | None,
    ) -> tuple[SessionRuntime, list[BaseModel]]:
        session_id = connection.session_id
        if session is None:
            runtime, headers = self._start(connection, hello)
            # Stored before the client learns its resume token (in a cluster; a no-op alone):
            # a worker the client comes back to, or a stranger lands on, then has the record
            # to check the token against before anything moves.
            await runtime.checkpoint()
            return runtime, headers
        taken_over = runtime is None
        if runtime is None:
            runtime = self._create(session)
        await self._take_over(session_id, connection)
        if hello.resume is None:
            # `_authorise` let it through: nothing has happened in the session yet.
            return runtime, [runtime.greet(hello.tools, connection.notify)]
        plan = session.resume_plan(hello.resume)
        ready, snapshot = runtime.resume(
            hello.tools, plan, hello.resume.last_seq, connection.notify
        )
        if taken_over:
            runtime.take_over()
        return runtime, [ready] if snapshot is None else [ready, snapshot]

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
        return self._loaded(await self.store.get(session_id))

    def _loaded(self, record: dict[str, Any] | None) -> Session | None:
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
            store=self._record_writer(),
        )
        self._runtimes[session.id] = runtime
        return runtime

    def _record_writer(self) -> Callable[[Session], Awaitable[None]] | None:
        """Where a running session's record goes as it changes (alone: nowhere)."""
        return None

    async def _take_over(self, session_id: str, connection: Connection) -> None:
        timer = self._held.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        previous = self._connections.get(session_id)
        self._connections[session_id] = connection
        if previous is not None and previous is not connection:
            previous.finish(CloseCode.REPLACED, "replaced by a newer connection")
            await previous.wait_closed(REPLACE_WAIT_S)

    @staticmethod
    def _authorise(access: Access, connection: Connection, hello: HelloMessage) -> None:
        """Only the session's owner, with its resume token, attaches to an existing session (or
        the owner without it while the session is untouched: see `Access.admits`)."""
        if not access.admits(connection.principal.id, hello.resume):
            raise SessionHub._denied()

    @staticmethod
    def _denied() -> ConnectionRefused:
        # The same whatever failed, so it tells a stranger nothing of the session.
        return ConnectionRefused(
            "this session exists; only its owner may attach to it, with its resume token",
            close_code=CloseCode.FORBIDDEN,
            code=ErrorCode.RESUME_DENIED,
        )

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
            try:
                await self.store.delete(session_id)
            except ConnectionError:
                # Redis away: the record expires with its time to live instead.
                log.warning("session %s ended; its record could not be deleted", session_id)
            await self._ended(session_id)
            return
        loop = asyncio.get_running_loop()
        self._held[session_id] = loop.call_later(
            self._limits.resume_grace_s, self._grace_over, session_id
        )
        await self._held_without_client(session_id, runtime)

    async def _ended(self, session_id: str) -> None:
        """A session ended for good (after `bye`) and its record was deleted."""

    async def _held_without_client(self, session_id: str, runtime: SessionRuntime) -> None:
        """A session's client left; the session is held for the resume grace."""

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
        try:
            await self._keep_record(runtime)
        except ConnectionError:
            # Redis away: keep the session here and try again later, rather than drop the
            # only copy of its record.
            log.warning("session %s could not be retired: the store is unreachable", session_id)
            loop = asyncio.get_running_loop()
            self._held[session_id] = loop.call_later(RETIRE_RETRY_S, self._grace_over, session_id)
            return
        if session_id not in self._connections and self._runtimes.get(session_id) is runtime:
            del self._runtimes[session_id]
            await self._retired(runtime)

    async def _keep_record(self, runtime: SessionRuntime) -> None:
        """Put a retired session's record in the store for its time to live."""
        session = runtime.session
        await self.store.put(session.id, session.dump(), self._limits.ttl_s)

    async def _retired(self, runtime: SessionRuntime) -> None:
        """A retired session's runtime was let go; its record is in the store."""

    async def close(self) -> None:
        """Server shutdown: end every session's run."""
        for timer in self._held.values():
            timer.cancel()
        self._held.clear()
        runtimes = list(self._runtimes.values())
        self._runtimes.clear()
        await asyncio.gather(*(r.end("disconnected") for r in runtimes), return_exceptions=True)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("ending a held session failed", exc_info=task.exception())
