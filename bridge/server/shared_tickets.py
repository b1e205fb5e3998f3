"""WebSocket tickets shared by every worker of a cluster, kept in the cluster's Redis.

Behind a balancer without stickiness, the `POST /ws-ticket` and the WebSocket that presents the
ticket usually reach different workers, where a ticket kept in the issuer's memory is unknown.
So in a cluster every worker issues tickets into Redis and redeems them from there, through the
small shared values of `RedisStore` (under its `{prefix}:{cluster}:value:` namespace):

- `ticket:{SHA-256 of the ticket, hex}`: the principal as JSON, written with SET NX PX and
  expiring after `ttl_s`; redeeming is a GETDEL, so of all the workers presented one ticket,
  at once or one after another, exactly one gets the principal. The key holds a digest, never
  the ticket: a key listing or `MONITOR` shows nothing a client could present.
- `ticket-count:{SHA-256 of the principal id, hex}`: the tickets issued to that principal in
  the current window of `ttl_s`, counted from its first ticket. Past `per_principal` a request
  is refused until the window ends, so at most 2 x `per_principal` of one principal's tickets
  are alive at once (those of this window and of the one before).

The total has no count of its own (one counter for the whole cluster would be a key every
ticket request of every worker writes): each ticket expires `ttl_s` after it was issued, so
Redis holds at most 2 x `per_principal` per principal the auth hook accepts, a few hundred
bytes each. `BRIDGE_MAX_TICKETS` bounds a worker's own book only.

When Redis cannot be reached, `issue` and `redeem` raise `ConnectionError` and nothing falls
back to the worker's memory: a ticket kept there could not be redeemed on any other worker.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bridge.server.auth import Principal

if TYPE_CHECKING:
    from bridge.redis_store import RedisStore

__all__ = ["SharedTickets", "UnshareableClaims"]


class UnshareableClaims(ValueError):
    """The principal's claims would not come back the same from JSON, so no worker could be
    handed the principal the ticket was issued to."""


class SharedTickets:
    def __init__(self, store: RedisStore, *, ttl_s: float, per_principal: int = 16) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._per_principal = per_principal

    async def issue(self, principal: Principal) -> str | None:
        """A new ticket for `principal`, or None past its bound for this window. Raises
        `UnshareableClaims` before anything is counted, and `ConnectionError` without Redis."""
        value = _encode(principal)
        issued = await self.store.count(f"ticket-count:{_digest(principal.id)}", self.ttl_s)
        if issued > self._per_principal:
            return None
        ticket = secrets.token_urlsafe(32)
        # A taken name would mean two equal 256-bit draws; refusing beats overwriting.
        if not await self.store.put_new(_ticket_name(ticket), value, self.ttl_s):
            return None
        return ticket

    async def redeem(self, ticket: str) -> Principal | None:
        """The ticket's principal, once across the cluster; None when unknown, used or expired.
        Raises `ConnectionError` without Redis."""
        raw = await self.store.take(_ticket_name(ticket))
        return None if raw is None else _decode(raw)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _ticket_name(ticket: str) -> str:
    return f"ticket:{_digest(ticket)}"


def _encode(principal: Principal) -> str:
    claims = dict(principal.claims)
    unshareable = sorted(repr(key) for key, value in claims.items() if not _survives(key, value))
    if unshareable:
        # Names only: a claim's value may be personal, and this message reaches the log.
        raise UnshareableClaims(
            f"claims {', '.join(unshareable)} of the principal do not survive JSON unchanged: "
            "in a cluster a ticket carries its principal to other workers as JSON, so the auth "
            "hook's claims must be strings, numbers, booleans, None, lists and dicts with "
            "string keys"
        )
    # ASCII escapes: a claim with a lone surrogate still loads back exactly.
    return json.dumps({"id": principal.id, "claims": claims}, separators=(",", ":"))


def _survives(key: Any, value: Any) -> bool:
    if not isinstance(key, str):
        return False
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError, RecursionError):
        return False


def _decode(raw: str) -> Principal | None:
    try:
        stored = json.loads(raw)
    except ValueError:
        return None
    # Only this module writes these values; anything else fails closed, as an unknown ticket.
    if not isinstance(stored, dict):
        return None
    principal_id, claims = stored.get("id"), stored.get("claims")
    if not isinstance(principal_id, str) or not isinstance(claims, Mapping):
        return None
    return Principal(principal_id, claims)
