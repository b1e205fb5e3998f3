"""Where session records live while no runtime holds them, and who owns a session now.

`SessionStore` is the interface the hub uses and nothing else knows which store is behind it:
`MemoryStore` here for one process; a shared store lets several processes serve one set of
sessions. Records are the plain data of `Session.dump()`; every record expires `ttl_s` after
it was last put. The owner lease says which process runs a session's runtime: whoever holds it
renews it, and a lease that lapses can be taken by another process.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["MemoryStore", "SessionStore"]

Record = dict[str, Any]


class SessionStore(Protocol):
    async def get(self, session_id: str) -> Record | None:
        """The stored record, or None when there is none or it expired."""

    async def put(self, session_id: str, record: Record, ttl_s: float) -> None:
        """Store (or replace) the record; it expires `ttl_s` from now."""

    async def delete(self, session_id: str) -> None: ...

    async def acquire(self, session_id: str, owner: str, ttl_s: float) -> bool:
        """Take or renew the owner lease; False while another owner's lease is live."""

    async def release(self, session_id: str, owner: str) -> None:
        """Give the lease up, if `owner` holds it."""

    async def owner(self, session_id: str) -> str | None: ...


class MemoryStore:
    """One process's store. Expiry costs time in proportion to what expires, not to the size."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[str, tuple[float, Record]] = {}
        self._leases: dict[str, tuple[float, str]] = {}
        # (expiry, session id) of every put; stale entries are skipped when popped.
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        self._expire()
        return len(self._records)

    async def get(self, session_id: str) -> Record | None:
        self._expire()
        found = self._records.get(session_id)
        return None if found is None else found[1]

    async def put(self, session_id: str, record: Record, ttl_s: float) -> None:
        expires = self._clock() + ttl_s
        self._records[session_id] = (expires, record)
        heapq.heappush(self._expiries, (expires, session_id))
        self._expire()

    async def delete(self, session_id: str) -> None:
        self._records.pop(session_id, None)
        self._leases.pop(session_id, None)

    async def acquire(self, session_id: str, owner: str, ttl_s: float) -> bool:
        now = self._clock()
        held = self._leases.get(session_id)
        if held is not None and held[1] != owner and held[0] > now:
            return False
        self._leases[session_id] = (now + ttl_s, owner)
        return True

    async def release(self, session_id: str, owner: str) -> None:
        held = self._leases.get(session_id)
        if held is not None and held[1] == owner:
            del self._leases[session_id]

    async def owner(self, session_id: str) -> str | None:
        held = self._leases.get(session_id)
        if held is None or held[0] <= self._clock():
            return None
        return held[1]

    def _expire(self) -> None:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:
            expires, session_id = heapq.heappop(self._expiries)
            current = self._records.get(session_id)
            if current is not None and current[0] == expires:
                del self._records[session_id]
