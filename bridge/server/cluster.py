"""This worker's place in a cluster of workers sharing one session store.

A session runs in one worker at a time, the one holding its owner lease. A client's connection
may land on any worker; that worker claims the session: it asks the owner to hand it over (the
owner stops the run without ending it, stores the record and lets the lease go) and takes the
lease. A worker that died answers nobody, and its lease lapses after `BRIDGE_OWNER_LEASE_S`;
the claim then succeeds all the same and the run goes on from the last stored record.

Moving the session to the client's worker, rather than relaying frames between workers, keeps
every frame on one process's socket: after a move, the cost of a cluster is the record being
stored at the moments that matter, not a Redis round trip per token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.redis_store import RedisStore

__all__ = ["Cluster"]

log = logging.getLogger(__name__)

_HANDOVER = "handover:"
# How often a claim looks whether the owner has let go.
_CLAIM_POLL_S = 0.01


class Cluster:
    def __init__(self, store: RedisStore, *, lease_s: float) -> None:
        self.store = store
        self.lease_s = lease_s
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self.owned: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._on_handover: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._on_lost: Callable[[str], Coroutine[Any, Any, None]] | None = None
        self._on_renewed: Callable[[set[str]], Coroutine[Any, Any, None]] | None = None
        # Whether the last renewal round could not reach the store (logged once per outage).
        self.unreachable = False

    def start(
        self,
        on_handover: Callable[[str], Coroutine[Any, Any, None]],
        on_lost: Callable[[str], Coroutine[Any, Any, None]],
        on_renewed: Callable[[set[str]], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        """Listen for handover requests and keep this worker's leases alive (once).

        `on_renewed(retaken)` follows every renewal round that reached the store; `retaken`
        are the sessions whose lease had vanished (a Redis restarted empty), whose records
        may have gone with it."""
        if self._tasks:
            return
        self._on_handover, self._on_lost = on_handover, on_lost
        self._on_renewed = on_renewed
        self._tasks = [
            asyncio.create_task(self._listen(), name="cluster listen"),
            asyncio.create_task(self._renew(), name="cluster renew"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        for session_id in list(self.owned):
            await self.release(session_id)

    async def claim(self, session_id: str) -> bool:
        """Make this worker the session's owner; False when the owner would not let go in time.

        Raises `ConnectionError` when the store cannot be reached.
        """
        if await self.store.acquire(session_id, self.worker, self.lease_s):
            self.owned.add(session_id)
            return True
        told: str | None = None
        # A live owner lets go within moments; a dead one's lease lapses. Either way the wait
        # is bounded by the lease.
        deadline = asyncio.get_running_loop().time() + self.lease_s + 1.0
        while True:
            owner = await self.store.owner(session_id)
            if owner is not None and owner != told and owner != self.worker:
                # Asked again whenever the owner changes: another worker's claim may win the
                # lease between our asking and our taking it (a client that dropped the
                # connection it made there), and that worker must be asked in turn, or this
                # claim waits out a lease nobody lets lapse.
                await self.store.tell(owner, _HANDOVER + session_id)
                told = owner
            if asyncio.get_running_loop().time() >= deadline:
                log.warning("session %s: its owner %s did not let go in time", session_id, owner)
                return False
            await asyncio.sleep(_CLAIM_POLL_S)
            if await self.store.acquire(session_id, self.worker, self.lease_s):
                self.owned.add(session_id)
                return True

    async def release(self, session_id: str) -> None:
        self.owned.discard(session_id)
        try:
            await self.store.release(session_id, self.worker)
        except ConnectionError:
            log.warning("could not release session %s: the store is unreachable", session_id)

    async def _listen(self) -> None:
        while True:
            try:
                async for message in self.store.listen(self.worker):
                    if message.startswith(_HANDOVER) and self._on_handover is not None:
                        session_id = message[len(_HANDOVER) :]
                        task = asyncio.create_task(self._on_handover(session_id))
                        task.add_done_callback(_log_failure)
            except ConnectionError:
                log.warning("handover requests unheard: the store is unreachable; retrying")
                await asyncio.sleep(1.0)

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
        for session_id in list(self.owned):
            if session_id not in self.owned:
                continue
            how = await self.store.renew(session_id, self.worker, self.lease_s)
            if session_id not in self.owned:
                # Let go (handed over) while the renewal was on its way: keeping the lease it
                # renewed or took would make the next owner wait for it to lapse.
                if how is not None:
                    await self.store.release(session_id, self.worker)
                continue
            if how == "taken":
                retaken.add(session_id)
            elif how is None:
                self.owned.discard(session_id)
                if self._on_lost is not None:
                    await self._on_lost(session_id)
        return retaken


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("handing a session over failed", exc_info=task.exception())
