"""Writing running sessions' records to a cluster's shared store, with Redis trouble in mind.

With Redis away, a session goes on in this worker's memory rather than failing its run or its
connection: what cannot be stored now is stored once Redis answers again (the hub asks after
each lease renewal that reached it). Meanwhile no other worker can take the session either:
claims need Redis too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bridge.server.cluster import Cluster
from bridge.session import Session

__all__ = ["RecordWriter"]

log = logging.getLogger(__name__)

# After a record could not be stored, later writes skip Redis for this long (the lease renewal,
# every third of a lease, tries again sooner when Redis is back).
STORE_RETRY_S = 1.0


class RecordWriter:
    def __init__(self, cluster: Cluster, *, ttl_s: float, taken: Callable[[Session], None]) -> None:
        self._cluster = cluster
        self._ttl_s = ttl_s
        # Told when a write finds another worker holding the session's lease.
        self._taken = taken
        # Sessions whose latest record could not be stored, to store again once Redis answers.
        self.unstored: set[str] = set()
        self._down_until = 0.0

    def retry_now(self) -> None:
        """Redis answered something: the next write tries it, whatever failed before."""
        self._down_until = 0.0

    async def put(self, session: Session) -> None:
        """Store what changed in a running session; never raises for Redis trouble."""
        loop = asyncio.get_running_loop()
        if loop.time() < self._down_until:
            # A write just failed: do not make every frame wait for another failure.
            self.unstored.add(session.id)
            return
        try:
            saved = await self.save(session)
        except ConnectionError:
            if not self.unstored:
                log.warning("session records cannot be stored: the store is unreachable")
            self.unstored.add(session.id)
            self._down_until = loop.time() + STORE_RETRY_S
            return
        self.unstored.discard(session.id)
        if not saved:
            log.warning("session %s was taken over by another worker; stopping it", session.id)
            self._taken(session)

    async def save(self, session: Session, *, refresh: bool = False) -> bool:
        """Write what changed since the last write (nothing, if nothing did, unless `refresh`:
        a write also starts the record's time to live afresh); False when another worker holds
        the session's lease (nothing written). Raises `ConnectionError` when Redis is away."""
        changes = session.changes()
        if not refresh and changes.same_as(session.stored):
            return True
        try:
            saved = await self._cluster.save(session.id, changes, self._ttl_s)
            if saved == "lost":
                # The lease vanished, and with it perhaps the record (a Redis restarted
                # empty), or the stored lists are not what the changes were made from: write
                # it whole, which takes the lease again.
                session.stored = None
                changes = session.changes()
                saved = await self._cluster.save(session.id, changes, self._ttl_s)
        except BaseException:
            # Redis lost, or the caller cancelled (a connection closing mid-write): whether the
            # write arrived is unknown, so the next one rewrites everything rather than append
            # what may be there already.
            session.stored = None
            raise
        if saved != "saved":
            return False
        session.stored = changes.mark
        return True
