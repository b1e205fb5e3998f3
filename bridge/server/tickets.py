"""WebSocket tickets: short-lived, single-use stand-ins for a credential a browser cannot send.

Browsers cannot set headers on a WebSocket, and a long-lived token in a URL ends up in history,
logs and `location.href`. So a page asks for a ticket over HTTP with its normal credentials
(`POST /ws-ticket`, bearer or cookie) and connects with `?ticket=`. A ticket is good once, for
`ttl_s`, and only for the principal it was issued to; a stolen one is worth one connection in
a few seconds, as that principal, and nothing once used.

`TicketBook` is one worker's book: no I/O and an injected clock, so expiry is tested without
waiting. Bounded: each principal has at most `per_principal` tickets outstanding (a new one retires
its oldest), and the book holds at most `max_tickets`; past that, issuing is refused until tickets
expire or are used. The endpoints use any `Tickets`: the book through `LocalTickets`, or, in a
cluster, `SharedTickets` (bridge/server/shared_tickets.py), which every worker redeems from.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from bridge.server.auth import Principal

__all__ = ["LocalTickets", "TicketBook", "Tickets"]


class Tickets(Protocol):
    """Where `POST /ws-ticket` gets tickets and the WebSocket handshake redeems them."""

    @property
    def ttl_s(self) -> float: ...

    async def issue(self, principal: Principal) -> str | None:
        """A new ticket for `principal`, or None when its bound is reached. A store kept
        elsewhere raises `ConnectionError` when it cannot be reached."""
        ...

    async def redeem(self, ticket: str) -> Principal | None:
        """The ticket's principal, once; None when unknown, used or expired. A store kept
        elsewhere raises `ConnectionError` when it cannot be reached."""
        ...


@dataclass(slots=True)
class _Ticket:
    principal: Principal
    expires_at: float


class TicketBook:
    def __init__(
        self,
        *,
        ttl_s: float,
        max_tickets: int = 10_000,
        per_principal: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._max = max_tickets
        self._per_principal = per_principal
        self._clock = clock
        # Insertion order is expiry order (one TTL for all), so expired tickets are at the front.
        self._tickets: OrderedDict[str, _Ticket] = OrderedDict()
        self._by_principal: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._tickets)

    def issue(self, principal: Principal) -> str | None:
        """A new ticket for `principal`, or None when the book is full."""
        self._purge()
        mine = self._by_principal.setdefault(principal.id, [])
        if len(mine) >= self._per_principal:
            self._drop(mine[0])
        if len(self._tickets) >= self._max:
            if not mine:
                del self._by_principal[principal.id]
            return None
        ticket = secrets.token_urlsafe(32)
        self._tickets[ticket] = _Ticket(principal, self._clock() + self.ttl_s)
        self._by_principal.setdefault(principal.id, []).append(ticket)
        return ticket

    def redeem(self, ticket: str) -> Principal | None:
        """The ticket's principal, once; None when unknown, used or expired."""
        entry = self._tickets.get(ticket)
        if entry is None:
            return None
        self._drop(ticket)
        if self._clock() >= entry.expires_at:
            return None
        return entry.principal

    def _purge(self) -> None:
        now = self._clock()
        while self._tickets:
            ticket, entry = next(iter(self._tickets.items()))
            if entry.expires_at > now:
                return
            self._drop(ticket)

    def _drop(self, ticket: str) -> None:
        entry = self._tickets.pop(ticket, None)
        if entry is None:
            return
        mine = self._by_principal.get(entry.principal.id)
        if mine is not None:
            mine.remove(ticket)
            if not mine:
                del self._by_principal[entry.principal.id]


class LocalTickets:
    """A `TicketBook` as `Tickets`: good for a server on its own, whose tickets are redeemed
    by the process that issued them."""

    def __init__(self, book: TicketBook) -> None:
        self.book = book

    @property
    def ttl_s(self) -> float:
        return self.book.ttl_s

    async def issue(self, principal: Principal) -> str | None:
        return self.book.issue(principal)

    async def redeem(self, ticket: str) -> Principal | None:
        return self.book.redeem(ticket)
