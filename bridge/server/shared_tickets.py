"""WebSocket tickets shared by every worker of a cluster, kept in the cluster's Redis.

Behind a balancer without stickiness, the `POST /ws-ticket` and the WebSocket that presents the
ticket usually reach different workers, where a ticket kept in the issuer's memory is unknown.
So in a cluster every worker issues tickets into Redis and redeems them from there, through the
small shared values of `RedisStore` (under its `{prefix}:{cluster}:value:` namespace).

A ticket is `{p}.{secret}`: `p` the first 16 hex digits of the SHA-256 of the principal id, and
43 URL-safe characters from `secrets`. The `p` part is what lets any worker find the ticket's
key without knowing whose it is; it is no credential (the secret is). A principal's keys share
the hash tag `{ticket-p}`, so they sit in one slot of a Redis Cluster:

- `{ticket-p}:{SHA-256 of the whole ticket, hex}`: the principal as JSON, written with SET NX
  PX and expiring after `ttl_s`; redeeming is a GETDEL, so of all the workers presented one
  ticket, at once or one after another, exactly one gets the principal. The key holds a
  digest, never the ticket: a key listing or `MONITOR` shows nothing a client could present.
- `{ticket-p}:~group`: a list of the digests of the principal's newest tickets, at most
  `per_principal`, expiring `ttl_s` after its last ticket was issued.

Both are written by one script (`RedisStore.put_bounded`): issuing past `per_principal` deletes
the principal's oldest ticket in the same step, so it redeems as unknown, as a worker's own
`TicketBook` retires it, and issuing is never refused for the bound. The many clients of one
principal (every page of a shared `BRIDGE_TOKEN`) each get a ticket; one stops working only
when `per_principal` newer tickets of its principal were issued before it was presented. Unlike
the book, the list counts those newer tickets whether or not they were used already, so a
ticket left unused while many others of its principal come and go is retired a little sooner.

The total has no count of its own (one counter for the whole cluster would be a key every
ticket request of every worker writes): each principal the auth hook accepts holds at most
`per_principal` live tickets, each expiring `ttl_s` after it was issued, a few hundred bytes
each, plus its list. `BRIDGE_MAX_TICKETS` bounds a worker's own book only.

When Redis cannot be reached, `issue` and `redeem` raise `ConnectionError` and nothing falls
back to the worker's memory: a ticket kept there could not be redeemed on any other worker.
"""

from __future__ import annotations

import hashlib
import json
import re
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
        """A new ticket for `principal`; past its bound, its oldest ticket is retired. Raises
        `UnshareableClaims` before anything is stored, and `ConnectionError` without Redis."""
        value = _encode(principal)
        part = _digest(principal.id)[:_PART_LEN]
        ticket = f"{part}.{secrets.token_urlsafe(_SECRET_BYTES)}"
        # A taken name would mean two equal 256-bit draws; refusing beats overwriting.
        stored = await self.store.put_bounded(
            _group(part), _digest(ticket), value, self.ttl_s, self._per_principal
        )
        return ticket if stored else None

    async def redeem(self, ticket: str) -> Principal | None:
        """The ticket's principal, once across the cluster; None when unknown, used, retired,
        expired or not a ticket this module makes. Raises `ConnectionError` without Redis."""
        shaped = _TICKET.fullmatch(ticket)
        # Checked before anything reaches Redis: the part becomes a hash tag, and a forged one
        # must be an unknown ticket, never a key of another kind or a ValueError.
        if shaped is None:
            return None
        raw = await self.store.take(f"{{{_group(shaped[1])}}}:{_digest(ticket)}")
        return None if raw is None else _decode(raw)


_PART_LEN = 16
_SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters of the URL-safe alphabet, without padding.
_TICKET = re.compile(rf"([0-9a-f]{{{_PART_LEN}}})\.[A-Za-z0-9_-]{{43}}")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _group(part: str) -> str:
    # Named for what it holds: a key listing tells a principal's tickets from other values.
    return f"ticket-{part}"


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
