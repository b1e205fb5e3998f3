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
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
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
from bridge.redis_store import Arrival
from bridge.server.cluster import Cluster
from bridge.server.connection import Connection
from bridge.server.departed import Departed, DepartedSessions, complete, copy_of
from bridge.server.record_writer import STORE_RETRY_S, RecordWriter
from bridge.session import Session
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
        session_copies_bytes: int = 64 * 2**20,
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
        self._writer = (
            None
            if cluster is None
            else RecordWriter(cluster, ttl_s=limits.ttl_s, taken=self._taken)
        )
        # Cluster: copies of sessions this worker let go of, for a cheaper load if one comes
        # back; valid while their record lives.
        self._departed = (
            None
            if cluster is None
            else DepartedSessions(max_bytes=session_copies_bytes, keep_s=limits.ttl_s)
        )
        # Cluster: sessions this worker has claimed and is attaching a connection to.
        self._arriving: dict[str, asyncio.Event] = {}
        self._greeting: dict[str, _Turn] = {}

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
        if self._cluster is None:
            runtime = self._runtimes.get(session_id)
            session = runtime.session if runtime is not None else await self._stored(session_id)
            if session is not None:
                _authorise(session.access(), connection, hello)
            return await self._attach(connection, hello, runtime, session)
        # One arrival at a time per session: two connections claiming it at once would each
        # start a runtime of their own.
        async with self._one_at_a_time(session_id):
            return await self._arrive(connection, hello)

    @asynccontextmanager
    async def _one_at_a_time(self, session_id: str) -> AsyncIterator[None]:
        """Arrivals and parking of one session, taken one at a time at this worker."""
        # The lock is dropped with its last user, not when it is merely free: a waiter woken
        # by a release has not taken it yet, and a third arrival must find the same lock.
        turn = self._greeting.setdefault(session_id, _Turn())
        turn.users += 1
        try:
            async with turn.lock:
                yield
        finally:
            turn.users -= 1
            if not turn.users and self._greeting.get(session_id) is turn:
                del self._greeting[session_id]

    async def _arrive(
        self, connection: Connection, hello: HelloMessage
    ) -> tuple[SessionRuntime, list[BaseModel]]:
        """`greet` in a cluster: the session may be running in another worker."""
        assert self._cluster is not None and self._departed is not None
        session_id = connection.session_id
        here = self._runtimes.get(session_id)
        if here is not None:
            _authorise(here.session.access(), connection, hello)
            if session_id not in self._cluster.parked:
                return await self._attach(connection, hello, here, here.session)
        arriving = asyncio.Event()
        try:
            try:
                # The client is checked against the stored session before anything moves (in
                # the claim's own step): a stranger must not be able to pull a session away
                # from the worker its client is on.
                token = None if hello.resume is None else hello.resume.token
                if here is None:
                    earlier = self._departed.take(session_id, token)
                else:
                    # Parked here, and perhaps taken since by a claimer (this worker would hear
                    # of it only at its next renewal): the claim tells, in the same step.
                    earlier = copy_of(here.session) if self._departed.reads_in_part else None
                arrival = await self._claim(
                    session_id, connection.principal.id, token, earlier, running=here is not None
                )
                self._arriving[session_id] = arriving
                if here is not None and arrival.how == "renewed":
                    # Still this worker's (the claim cleared the parked mark).
                    if self._runtimes.get(session_id) is here:
                        return await self._attach(connection, hello, here, here.session)
                    session = await self._stored(session_id)  # let go of meanwhile
                else:
                    if here is not None:
                        # It went on elsewhere: what this worker has of it is a copy now.
                        await self._lost(session_id, keep=False)
                    session = self._loaded(arrival.record, earlier, arrival.since)
                if session is not None:
                    # What was stored when the lease came here. Checked again: a session too
                    # new to have been stored when the claim began had nothing to check.
                    _authorise(session.access(), connection, hello)
            except ConnectionError:
                raise _store_away() from None
            return await self._attach(connection, hello, None, session)
        except BaseException:
            if session_id in self._cluster.owned and self._runtimes.get(session_id) is None:
                # Refused after the claim: a lease held with no runtime behind it would only
                # make the next worker wait for it to lapse.
                await self._cluster.release(session_id)
            raise
        finally:
            arriving.set()
            if self._arriving.get(session_id) is arriving:
                del self._arriving[session_id]

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
            if self._cluster is not None:
                # Stored before the client learns its resume token: a worker the client comes
                # back to, or a stranger lands on, then has the record to check the token
                # against before it asks the owner to let go.
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

    async def _claim(
        self,
        session_id: str,
        principal: str,
        token: str | None,
        earlier: Departed | None,
        *,
        running: bool,
    ) -> Arrival:
        """Claim the session for the client; with what this worker holds of it (`earlier`),
        read only what was added since."""
        assert self._cluster is not None
        await self._cluster.start(self._let_go, self._lost, self._renewed)
        arrival = await self._cluster.claim(
            session_id,
            principal=principal,
            token=token,
            held=None if earlier is None else earlier.held,
            counting="" if earlier is None else earlier.counting,
            running=running,
        )
        if arrival.how == "refused":
            raise _denied()
        if not arrival.granted:
            raise ConnectionRefused(
                "the session is busy on another worker; try again", close_code=CloseCode.BUSY
            )
        return arrival

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

    def _loaded(
        self,
        record: dict[str, Any] | None,
        earlier: Departed | None = None,
        since: Mapping[str, tuple[int, list[str]]] | None = None,
    ) -> Session | None:
        """The session of a stored record; with `since`, the record's lists hold only what was
        added since the `earlier` copy this worker kept, and the copy fills in the rest."""
        if record is None:
            return None
        clock, specs = self._wall_clock, self._server_tools.specs
        session = Session.load(record, clock=clock, limits=self._limits, server_tools=specs)
        if since:
            assert earlier is not None, "a store read only part of a list no copy holds"
            complete(session, earlier, since)
        if self._cluster is not None:
            # The store holds exactly this: later writes need only send what changes.
            session.stored = session.mark()
        return session

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
            store=self._writer.put if self._writer is not None else None,
        )
        self._runtimes[session.id] = runtime
        return runtime

    def _taken(self, session: Session) -> None:
        """A write found another worker holding the session: stop it here, if it still runs."""
        runtime = self._runtimes.get(session.id)
        if runtime is None or runtime.session is not session or self._cluster is None:
            return
        # At once, not when the task below runs: the run that made the write must not go on
        # to anything the other worker will do again (a server tool, above all).
        runtime.stop_for_move()
        self._cluster.owned.discard(session.id)
        self._cluster.parked.discard(session.id)
        task = asyncio.get_running_loop().create_task(self._lost(session.id))
        task.add_done_callback(_log_failure)

    async def _renewed(self, retaken: set[str]) -> None:
        """The store answered a lease renewal: store again the records it may lack, those not
        stored during an outage and those of leases that had vanished with a restarted Redis."""
        assert self._writer is not None
        unstored = self._writer.unstored
        self._writer.retry_now()
        for session_id in retaken | unstored:
            runtime = self._runtimes.get(session_id)
            if runtime is None:
                unstored.discard(session_id)
                continue
            if session_id in retaken:
                runtime.session.stored = None
            await runtime.checkpoint()
        if not unstored and retaken:
            log.info("stored %d session records again after the store came back", len(retaken))

    async def _let_go(self, session_id: str) -> None:
        """Another worker has this session's client now: stop here without ending anything and
        store what changed (the cluster then passes the lease on)."""
        arriving = self._arriving.get(session_id)
        if arriving is not None:
            # This worker won the lease and is attaching a connection to the session right
            # now: let that finish and hand over what it made. Letting go of the lease at once
            # would leave the attach going on without it, the session running in two places.
            try:
                async with asyncio.timeout(_REPLACE_WAIT_S):
                    await arriving.wait()
            except TimeoutError:
                log.warning("session %s: handing over while still attaching here", session_id)
        timer = self._held.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        runtime = self._runtimes.pop(session_id, None)
        connection = self._connections.pop(session_id, None)
        if connection is not None:
            connection.finish(CloseCode.MOVED, "the session moved to another worker")
        if runtime is not None:
            if connection is not None:
                runtime.outbox.detach(connection.notify)
            await runtime.hand_over()
            # Redis carried the request, so it is worth trying now whatever failed before.
            assert self._writer is not None and self._departed is not None
            self._writer.retry_now()
            await runtime.checkpoint()
            if session_id in self._writer.unstored:
                # The next owner goes on from the last record that was stored, as after a crash.
                log.warning("session %s handed over without its latest record", session_id)
                self._writer.unstored.discard(session_id)
            else:
                self._departed.keep(runtime.session)

    async def _lost(self, session_id: str, *, keep: bool = True) -> None:
        """The lease went to another worker while this one still ran the session (it could not
        renew in time, or a claimer took it parked): stop at once, storing nothing, as the
        other worker goes on from the record; with `keep`, keep a copy of its lists."""
        timer = self._held.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        runtime = self._runtimes.pop(session_id, None)
        connection = self._connections.pop(session_id, None)
        if connection is not None:
            connection.finish(CloseCode.MOVED, "the session moved to another worker")
        if runtime is not None:
            await runtime.hand_over()
            if keep and self._departed is not None:
                # Kept only if its lists are as stored (a parked session taken, say).
                self._departed.keep(runtime.session)

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
            if self._departed is not None:
                self._departed.drop(session_id)
            await runtime.end("disconnected")
            if self._writer is not None:
                self._writer.unstored.discard(session_id)
            try:
                await self.store.delete(session_id)
            except ConnectionError:
                # Redis away: the record expires with its time to live instead.
                log.warning("session %s ended; its record could not be deleted", session_id)
            if self._cluster is not None:
                await self._cluster.release(session_id)
            return
        loop = asyncio.get_running_loop()
        self._held[session_id] = loop.call_later(
            self._limits.resume_grace_s, self._grace_over, session_id
        )
        if self._cluster is not None:
            await self._park(session_id, runtime)

    async def _park(self, session_id: str, runtime: SessionRuntime) -> None:
        """With its client gone, let the next worker the client lands on take the session
        without asking this one (see `bridge.server.cluster`); the run goes on here meanwhile."""
        assert self._cluster is not None and self._writer is not None
        async with self._one_at_a_time(session_id):
            if session_id in self._connections or self._runtimes.get(session_id) is not runtime:
                return  # a client came back first
            await runtime.checkpoint()
            if session_id in self._writer.unstored or self._runtimes.get(session_id) is not runtime:
                return  # not all of it is stored: a claimer must ask
            try:
                await self._cluster.park(session_id)
            except ConnectionError:
                log.debug("session %s not parked: the store is unreachable", session_id)

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
            if self._writer is not None:
                # Written even unchanged: the record's time to live starts now.
                await self._writer.save(runtime.session, refresh=True)
            else:
                await self.store.put(session_id, runtime.session.dump(), self._limits.ttl_s)
        except ConnectionError:
            # Redis away: keep the session here and try again later, rather than drop the
            # only copy of its record.
            log.warning("session %s could not be retired: the store is unreachable", session_id)
            loop = asyncio.get_running_loop()
            self._held[session_id] = loop.call_later(
                STORE_RETRY_S * 5, self._grace_over, session_id
            )
            return
        if self._writer is not None:
            self._writer.unstored.discard(session_id)
        if session_id not in self._connections and self._runtimes.get(session_id) is runtime:
            del self._runtimes[session_id]
            if self._cluster is not None:
                await self._cluster.release(session_id)
            if self._departed is not None:
                self._departed.keep(runtime.session)

    async def close(self) -> None:
        """Server shutdown: end every session's run."""
        for timer in self._held.values():
            timer.cancel()
        self._held.clear()
        if self._cluster is not None:
            # Another worker carries these sessions on: hand them over rather than end them.
            for session_id in list(self._runtimes):
                await self._let_go(session_id)
            await self._cluster.stop()
            return
        runtimes = list(self._runtimes.values())
        self._runtimes.clear()
        await asyncio.gather(*(r.end("disconnected") for r in runtimes), return_exceptions=True)


@dataclass(slots=True)
class _Turn:
    """Arrivals of one session at this worker, taken one at a time."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("ending a held session failed", exc_info=task.exception())


def _authorise(access: Access, connection: Connection, hello: HelloMessage) -> None:
    """Only the session's owner, with its resume token, attaches to an existing session (or
    the owner without it while the session is untouched: see `Access.admits`)."""
    if not access.admits(connection.principal.id, hello.resume):
        raise _denied()


def _denied() -> ConnectionRefused:
    # The same whatever failed, so it tells a stranger nothing of the session.
    return ConnectionRefused(
        "this session exists; only its owner may attach to it, with its resume token",
        close_code=CloseCode.FORBIDDEN,
        code=ErrorCode.RESUME_DENIED,
    )


def _store_away() -> ConnectionRefused:
    return ConnectionRefused(
        "the session store cannot be reached; try again later", close_code=CloseCode.BUSY
    )
