"""This worker's place in a cluster of workers sharing one session store.

A session runs in one worker at a time, the one holding its owner lease. A client's connection
may land on any worker; that worker claims the session, and the owner hands it over: it stops
the run without ending it, stores what changed and passes the lease to the claimer, telling it
so. A worker that died answers nobody, and its lease lapses after `BRIDGE_OWNER_LEASE_S`; the
claim then succeeds all the same and the run goes on from the last stored record.

Moving the session to the client's worker, rather than relaying frames between workers, keeps
every frame on one process's socket: after a move, the cost of a cluster is the record being
stored at the moments that matter, not a Redis round trip per token.

An owner whose client left parks the session once all of it is stored: it keeps running it
(a call's deadline may still pass, the grace may end), but a claimer takes the lease without
asking, with the record, in one round trip. The owner is not told: it finds out at its next
lease renewal, or when it next acts for the session (a client coming back to it is claimed
like anywhere else, the claim clearing the mark if the lease is still its own; its writes are
refused). Waking it at once would put its clean-up on the claimer's way, on a machine whose
workers share cores. Nothing the owner does after the claim reaches anyone, so the claimer's
record is the session.

Messages between workers (each has its own channel):

- `handover <claimer> <session>`, to the owner: a client of the session is on the claimer now;
- `given <session>`, to the claimer: the lease is yours, the record is stored;
- `retry <session>`, to the claimer: ask again (this worker does not hold the session).

Pub/sub may drop a message (a listener reconnecting); a claim asks again every
`_ASK_AGAIN_S`, so a lost message costs that much, never the claim.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from bridge.record import Changes
from bridge.redis_store import Arrival, RedisStore

__all__ = ["Cluster"]

log = logging.getLogger(__name__)

# How long a claim waits for an answer before it asks again.
_ASK_AGAIN_S = 0.05
_SUBSCRIBE_WAIT_S = 5.0

OnHandover = Callable[[str], Coroutine[Any, Any, None]]
OnLost = Callable[[str], Coroutine[Any, Any, None]]
OnRenewed = Callable[[set[str]], Coroutine[Any, Any, None]]


class Cluster:
    def __init__(self, store: RedisStore, *, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.owned: set[str] = set()
        # Owned sessions with no client here, marked in the store as free to take.
        self.parked: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._starting: asyncio.Lock | None = None
        self._on_handover: OnHandover | None = None
        self._on_lost: OnLost | None = None
        self._on_renewed: OnRenewed | None = None
        # Claims of this worker waiting for an answer, by session.
        self._answers: dict[str, asyncio.Event] = {}
        # Sessions this worker is handing over, with the claimers that asked for each.
        self._leaving: dict[str, list[str]] = {}
        # Whether the last renewal round could not reach the store (logged once per outage).
        self.unreachable = False

    async def start(
        self, on_handover: OnHandover, on_lost: OnLost, on_renewed: OnRenewed | None = None
    ) -> None:
        """Listen for other workers and keep this worker's leases alive (once); returns when
        the subscription is confirmed, so no request sent to this worker goes unheard.

        `on_handover(session)` stops the session here and stores it; `on_lost(session)` stops
        it storing nothing (its lease went elsewhere); `on_renewed(retaken)` follows every
        renewal round that reached the store, `retaken` being the sessions whose lease had
        vanished (a Redis restarted empty), whose records may have gone with it.
        Raises `ConnectionError` when the store cannot be reached."""
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._tasks:
                return
            self._on_handover, self._on_lost = on_handover, on_lost
            self._on_renewed = on_renewed
            subscribed = asyncio.Event()
            listening = asyncio.create_task(self._listen(subscribed), name="cluster listen")
            try:
                async with asyncio.timeout(_SUBSCRIBE_WAIT_S):
                    await subscribed.wait()
            except TimeoutError:
                listening.cancel()
                raise ConnectionError("could not subscribe to this worker's channel") from None
            self._tasks = [listening, asyncio.create_task(self._renew(), name="cluster renew")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for session_id in list(self.owned):
            await self.release(session_id)

    # Claiming ----------------------------------------------------------------------------------

    async def claim(
        self,
        session_id: str,
        *,
        principal: str,
        token: str | None,
        held: Mapping[str, tuple[int, int]] | None = None,
        counting: str = "",
        running: bool = False,
    ) -> Arrival:
        """Make this worker the session's owner for a client of `principal` holding resume
        `token`: granted with the stored record; "refused" when the stored session does not
        admit the client (nothing moved); "busy" when the owner would not let go in time (a
        live owner lets go within moments; a dead one's lease lapses). `held`, `counting` and
        `running`: what this worker still holds of the session (see `RedisStore.arrive`).

        Raises `ConnectionError` when the store cannot be reached.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease_s + 1.0
        answer = self._answers.setdefault(session_id, asyncio.Event())
        ask = f"handover {self.worker} {session_id}"
        try:
            while True:
                answer.clear()
                arrival = await self.store.arrive(
                    session_id,
                    self.worker,
                    self.lease_s,
                    principal=principal,
                    token=token,
                    ask=ask,
                    held=held,
                    counting=counting,
                    running=running,
                )
                log.debug("session %s: claimed: %s %s", session_id, arrival.how, arrival.holder)
                if arrival.granted:
                    self.owned.add(session_id)
                    self.parked.discard(session_id)
                    return arrival
                if arrival.how == "refused":
                    return arrival
                left = deadline - loop.time()
                if left <= 0:
                    holder = arrival.holder
                    log.warning("session %s: owner %s did not let go in time", session_id, holder)
                    return Arrival("busy", holder)
                if not arrival.holder:
                    continue  # the lease lapsed between the claim's two steps: take it now
                try:
                    async with asyncio.timeout(min(left, _ASK_AGAIN_S)):
                        await answer.wait()
                except TimeoutError:
                    continue
                if session_id in self.owned:
                    # `given`: the owner passed the lease here with the record stored.
                    return Arrival("given", arrival.holder, await self.store.get(session_id))
        finally:
            if self._answers.get(session_id) is answer:
                del self._answers[session_id]

    async def park(self, session_id: str) -> None:
        """Let a claimer take this session without asking: call only with no client attached
        here and all of the session stored."""
        if await self.store.park(session_id, self.worker):
            self.parked.add(session_id)

    async def release(self, session_id: str) -> None:
        self.owned.discard(session_id)
        self.parked.discard(session_id)
        try:
            await self.store.release(session_id, self.worker)
        except ConnectionError:
            log.warning("could not release session %s: the store is unreachable", session_id)

    # Storing -----------------------------------------------------------------------------------

    async def save(self, session_id: str, changes: Changes, ttl_s: float) -> str:
        """Store a session this worker runs; see `RedisStore.save` for what it returns."""
        return await self.store.save(
            session_id, changes, ttl_s, writer=self.worker, lease_s=self.lease_s
        )

    # Handing over ------------------------------------------------------------------------------

    async def _hand_over(self, session_id: str, claimer: str) -> None:
        asked = self._leaving.get(session_id)
        if asked is not None:
            # Already on its way out: this claimer is answered when it has gone.
            asked.append(claimer)
            return
        if session_id not in self.owned:
            await self._tell(claimer, f"retry {session_id}")
            return
        self._leaving[session_id] = [claimer]
        self.parked.discard(session_id)
        try:
            if self._on_handover is not None:
                await self._on_handover(session_id)
        finally:
            claimers = self._leaving.pop(session_id)
        self.owned.discard(session_id)
        first, *others = claimers
        try:
            await self.store.give(
                session_id, self.worker, first, self.lease_s, f"given {session_id}"
            )
        except ConnectionError:
            log.warning("could not hand session %s over: the store is unreachable", session_id)
        log.debug("session %s: handed over to %s", session_id, first)
        for claimer in others:
            await self._tell(claimer, f"retry {session_id}")

    async def _tell(self, worker: str, message: str) -> None:
        try:
            await self.store.tell(worker, message)
        except ConnectionError:
            pass  # the claimer asks again by itself

    def _heard(self, message: str) -> None:
        log.debug("heard %s", message)
        kind, _, rest = message.partition(" ")
        if kind == "handover":
            claimer, _, session_id = rest.partition(" ")
            task = asyncio.create_task(self._hand_over(session_id, claimer))
            task.add_done_callback(_log_failure)
            return
        answer = self._answers.get(rest)
        if answer is None:
            if kind == "given" and rest not in self.owned:
                # Passed here after the claim gave up: a lease nobody runs would only make the
                # next claimer wait for it to lapse.
                task = asyncio.create_task(self.release(rest))
                task.add_done_callback(_log_failure)
            return
        if kind == "given":
            self.owned.add(rest)
        answer.set()

    async def _listen(self, subscribed: asyncio.Event) -> None:
        while True:
            try:
                async for message in self.store.listen(self.worker, subscribed.set):
                    self._heard(message)
            except ConnectionError:
                log.warning("other workers unheard: the store is unreachable; retrying")
                await asyncio.sleep(1.0)

    # Leases ------------------------------------------------------------------------------------

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                retaken = await self._renew_round()
            except ConnectionError:
                # Unrenewed, the leases lapse; no other worker can take a session while the
                # store is down either, and sessions here go on meanwhile. Said once an outage.
                if not self.unreachable:
                    log.warning("cannot renew session leases: the store is unreachable")
                self.unreachable = True
                continue
            if self.unreachable:
                log.warning("the store is reachable again; session leases renewed")
                self.unreachable = False
            if self._on_renewed is not None:
                await self._on_renewed(retaken)

    async def _renew_round(self) -> set[str]:
        retaken: set[str] = set()
        due = [session_id for session_id in self.owned if session_id not in self._leaving]
        found = await self.store.renew_all(due, self.worker, self.lease_s)
        for session_id, how in zip(due, found, strict=True):
            if session_id not in self.owned or session_id in self._leaving:
                # Let go (or letting go) while the renewal was on its way: a lease it renewed
                # or took is the hand-over's to pass on, or nobody's.
                if how is not None and session_id not in self._leaving:
                    await self.store.release(session_id, self.worker)
                continue
            if how == "taken":
                retaken.add(session_id)
            elif how is None:
                self.owned.discard(session_id)
                self.parked.discard(session_id)
                if self._on_lost is not None:
                    await self._on_lost(session_id)
        return retaken


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("handing a session over failed", exc_info=task.exception())
