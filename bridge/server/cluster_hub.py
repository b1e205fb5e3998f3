"""The session hub of a worker in a cluster: other workers share its sessions through Redis.

A session lives in the worker its client's connection is on (`bridge.server.cluster`): runs
store their record as they go, a connection that lands here claims its session (taking it from
the worker that parked it, or asking the worker that runs it to hand it over), and this worker
lets go of a session another worker claims. It keeps a copy of the lists of a session it let
go of, so that one coming back loads only what changed (`bridge.server.departed`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bridge.agent.runtime import SessionRuntime
from bridge.errors import CloseCode, ConnectionRefused
from bridge.protocol import HelloMessage
from bridge.redis_store import Arrival
from bridge.server.cluster import Cluster
from bridge.server.connection import Connection
from bridge.server.departed import Departed, DepartedSessions, complete, copy_of
from bridge.server.hub import REPLACE_WAIT_S, SessionHub
from bridge.server.record_writer import RecordWriter
from bridge.session import Session

__all__ = ["ClusterHub"]

log = logging.getLogger(__name__)


class ClusterHub(SessionHub):
    def __init__(
        self, *, cluster: Cluster, session_copies_bytes: int = 64 * 2**20, **hub: Any
    ) -> None:
        super().__init__(**hub)
        self._cluster = cluster
        self._writer = RecordWriter(cluster, ttl_s=self._limits.ttl_s, taken=self._taken)
        # Copies of sessions this worker let go of, valid while their record lives.
        self._departed = DepartedSessions(max_bytes=session_copies_bytes, keep_s=self._limits.ttl_s)
        # Sessions this worker has claimed and is attaching a connection to.
        self._arriving: dict[str, asyncio.Event] = {}
        self._greeting: dict[str, _Turn] = {}

    # Arrival -----------------------------------------------------------------------------------

    async def _arrive(
        self, connection: Connection, hello: HelloMessage
    ) -> tuple[SessionRuntime, list[BaseModel]]:
        # One arrival at a time per session: two connections claiming it at once would each
        # start a runtime of their own.
        async with self._one_at_a_time(connection.session_id):
            return await self._claim_and_attach(connection, hello)

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

    async def _claim_and_attach(
        self, connection: Connection, hello: HelloMessage
    ) -> tuple[SessionRuntime, list[BaseModel]]:
        session_id = connection.session_id
        here = self._runtimes.get(session_id)
        if here is not None:
            self._authorise(here.session.access(), connection, hello)
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
                    self._authorise(session.access(), connection, hello)
            except ConnectionError:
                raise ConnectionRefused(
                    "the session store cannot be reached; try again later",
                    close_code=CloseCode.BUSY,
                ) from None
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
            raise self._denied()
        if not arrival.granted:
            raise ConnectionRefused(
                "the session is busy on another worker; try again", close_code=CloseCode.BUSY
            )
        return arrival

    def _loaded(
        self,
        record: dict[str, Any] | None,
        earlier: Departed | None = None,
        since: Mapping[str, tuple[int, list[str]]] | None = None,
    ) -> Session | None:
        """The session of a stored record; with `since`, the record's lists hold only what was
        added since the `earlier` copy this worker kept, and the copy fills in the rest."""
        session = super()._loaded(record)
        if session is None:
            return None
        if since:
            assert earlier is not None, "a store read only part of a list no copy holds"
            complete(session, earlier, since)
        # The store holds exactly this: later writes need only send what changes.
        session.stored = session.mark()
        return session

    def _record_writer(self) -> Callable[[Session], Awaitable[None]]:
        return self._writer.put

    # Other workers -----------------------------------------------------------------------------

    def _taken(self, session: Session) -> None:
        """A write found another worker holding the session: stop it here, if it still runs."""
        runtime = self._runtimes.get(session.id)
        if runtime is None or runtime.session is not session:
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
                async with asyncio.timeout(REPLACE_WAIT_S):
                    await arriving.wait()
            except TimeoutError:
                log.warning("session %s: handing over while still attaching here", session_id)
        runtime = self._drop(session_id)
        if runtime is None:
            return
        await runtime.hand_over()
        # Redis carried the request, so it is worth trying now whatever failed before.
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
        runtime = self._drop(session_id)
        if runtime is not None:
            await runtime.hand_over()
            if keep:
                # Kept only if its lists are as stored (a parked session taken, say).
                self._departed.keep(runtime.session)

    def _drop(self, session_id: str) -> SessionRuntime | None:
        """Forget a session another worker has now; its connection here, if any, is told to
        come back (1012), which lands it wherever the session is."""
        timer = self._held.pop(session_id, None)
        if timer is not None:
            timer.cancel()
        runtime = self._runtimes.pop(session_id, None)
        connection = self._connections.pop(session_id, None)
        if connection is not None:
            connection.finish(CloseCode.MOVED, "the session moved to another worker")
            if runtime is not None:
                runtime.outbox.detach(connection.notify)
        return runtime

    # Departure ---------------------------------------------------------------------------------

    async def _ended(self, session_id: str) -> None:
        self._departed.drop(session_id)
        self._writer.unstored.discard(session_id)
        await self._cluster.release(session_id)

    async def _held_without_client(self, session_id: str, runtime: SessionRuntime) -> None:
        """With its client gone, let the next worker the client lands on take the session
        without asking this one (see `bridge.server.cluster`); the run goes on here meanwhile."""
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

    async def _keep_record(self, runtime: SessionRuntime) -> None:
        # Written even unchanged: the record's time to live starts now.
        await self._writer.save(runtime.session, refresh=True)
        self._writer.unstored.discard(runtime.session.id)

    async def _retired(self, runtime: SessionRuntime) -> None:
        await self._cluster.release(runtime.session.id)
        self._departed.keep(runtime.session)

    async def close(self) -> None:
        """Server shutdown: another worker carries these sessions on, so they are handed over
        rather than ended."""
        for timer in self._held.values():
            timer.cancel()
        self._held.clear()
        for session_id in list(self._runtimes):
            await self._let_go(session_id)
        await self._cluster.stop()


@dataclass(slots=True)
class _Turn:
    """Arrivals of one session at this worker, taken one at a time."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("stopping a session taken by another worker failed", exc_info=task.exception())
