"""Tickets shared through a real Redis: two `RedisStore` connections on one namespace stand for
two workers of a cluster. A ticket issued by one is redeemed by the other, once however many try
at the same moment, never after its TTL; past its bound a principal's oldest tickets are
retired, never a request refused; a forged ticket is unknown; claims come back as they went in
or are refused; Redis holds no usable ticket in its keys; and with Redis gone `POST /ws-ticket`
answers 503 and a ticket's socket is refused with 1013."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from bridge import BridgeSettings, create_app
from bridge.redis_store import RedisStore
from bridge.server.auth import Principal
from bridge.server.shared_tickets import SharedTickets, UnshareableClaims
from bridge.testing import serve_app
from bridge.testing.redis_server import RedisServer
from tests.security.access_support import http, refused_with
from tests.security.wire import captured_logs
from tests.store.support import require, store_on

ALICE = Principal(
    "alice@example.com",
    {
        "roles": ["admin", "viewer"],
        "org": {"id": 7, "name": "Ünïcode Ltd", "nested": {"ok": True, "none": None}},
        "score": 0.5,
        "odd": "\ud800 lone surrogate",
    },
)


@asynccontextmanager
async def two_workers(server: RedisServer) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two connections to one cluster's namespace, as two worker processes would hold."""
    async with store_on(server) as first:
        second = await RedisStore.connect(server.url, first.cluster)
        try:
            yield first, second
        finally:
            await second.close()


async def keys_of(store: RedisStore) -> list[str]:
    return [key.decode() async for key in store.client.scan_iter(f"{store.namespace}*")]


def text(raw: object) -> str:
    assert isinstance(raw, bytes), raw
    return raw.decode()


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def tag_of(principal: Principal) -> str:
    """The hash tag of a principal's ticket keys, as documented."""
    return f"{{ticket-{sha256(principal.id)[:16]}}}"


def ticket_key(store: RedisStore, ticket: str) -> str:
    tag = "{ticket-" + ticket.split(".", 1)[0] + "}"
    return store.value_key(f"{tag}:{sha256(ticket)}")


def group_key(store: RedisStore, principal: Principal) -> str:
    return store.value_key(f"{tag_of(principal)}:~group")


async def test_a_ticket_issued_by_one_worker_is_redeemed_once_by_another(
    redis_server: RedisServer,
) -> None:
    async with two_workers(redis_server) as (a, b):
        issuer, redeemer = SharedTickets(a, ttl_s=30), SharedTickets(b, ttl_s=30)
        ticket = await issuer.issue(ALICE)
        assert ticket is not None and len(ticket) >= 40
        redeemed = await redeemer.redeem(ticket)
        assert redeemed == ALICE and dict(redeemed.claims) == dict(ALICE.claims)
        assert await issuer.redeem(ticket) is None
        assert await redeemer.redeem(ticket) is None
        assert await redeemer.redeem("made-up") is None


async def test_twenty_workers_redeeming_one_ticket_at_once_admit_one(
    redis_server: RedisServer,
) -> None:
    async with two_workers(redis_server) as (a, b):
        ticket = await SharedTickets(a, ttl_s=30).issue(ALICE)
        assert ticket is not None
        sides = [SharedTickets(a, ttl_s=30), SharedTickets(b, ttl_s=30)]
        # Each redeem on a connection of its own from the pool, so they truly overlap in Redis.
        answers = await asyncio.gather(*(sides[n % 2].redeem(ticket) for n in range(20)))
        assert [p for p in answers if p is not None] == [ALICE]


async def test_a_ticket_expires_after_its_ttl(redis_server: RedisServer) -> None:
    async with two_workers(redis_server) as (a, b):
        tickets = SharedTickets(a, ttl_s=0.08)
        ticket = await tickets.issue(ALICE)
        assert ticket is not None
        assert sorted(await keys_of(a)) == sorted([ticket_key(a, ticket), group_key(a, ALICE)])
        # The principal's list goes with its last ticket.
        for key in await keys_of(a):
            assert 0 < await a.client.pttl(key) <= 80
        # Redis's own clock is what is tested, and it has no event to wait on: one wait, a
        # little past the TTL, bounded.
        await asyncio.sleep(0.15)
        assert await SharedTickets(b, ttl_s=0.08).redeem(ticket) is None


async def test_past_per_principal_a_principals_oldest_tickets_are_retired(
    redis_server: RedisServer,
) -> None:
    bound = 16
    bob = Principal("bob")
    async with two_workers(redis_server) as (a, b):
        sides = [SharedTickets(store, ttl_s=30, per_principal=bound) for store in (a, b)]
        # Bob at his own bound throughout, his tickets issued between Alice's.
        bobs: list[str | None] = []
        alices: list[str | None] = []
        for n in range(bound + 2):
            alices.append(await sides[n % 2].issue(ALICE))
            if n < bound:
                bobs.append(await sides[(n + 1) % 2].issue(bob))
        # The bound is the cluster's, and past it nobody is refused.
        assert all(alices) and len(set(alices)) == bound + 2
        assert all(bobs) and len(set(bobs)) == bound
        issued = [t for t in alices if t is not None]

        keys = await keys_of(a)
        mine = [k for k in keys if tag_of(ALICE) in k]
        assert sorted(mine) == sorted(
            [group_key(a, ALICE), *(ticket_key(a, t) for t in issued[2:])]
        )
        # No key holds a ticket, nor the secret half of one.
        halves = [t.split(".")[1] for t in issued + bobs if t]
        assert not any(secret in key for key in keys for secret in halves)
        assert await a.client.llen(group_key(a, ALICE)) == bound
        assert 0 < await a.client.pttl(group_key(a, ALICE)) <= 30_000

        # The two oldest are retired on every worker; the newest each redeem once, anywhere.
        for ticket in issued[:2]:
            assert await sides[0].redeem(ticket) is None
            assert await sides[1].redeem(ticket) is None
        for n, ticket in enumerate(issued[2:]):
            assert await sides[n % 2].redeem(ticket) == ALICE
            assert await sides[(n + 1) % 2].redeem(ticket) is None
        # Another principal's tickets are untouched by Alice's going past her bound.
        assert [await sides[n % 2].redeem(t) for n, t in enumerate(bobs) if t] == [bob] * bound
        # What is left is the two lists, which expire with the TTL.
        assert sorted(await keys_of(a)) == sorted([group_key(a, ALICE), group_key(a, bob)])


async def test_a_forged_ticket_is_unknown(redis_server: RedisServer) -> None:
    async with two_workers(redis_server) as (a, b):
        tickets = SharedTickets(a, ttl_s=30)
        ticket = await tickets.issue(ALICE)
        assert ticket is not None
        part, secret = ticket.split(".")
        other = "0123456789abcdef"
        assert other != part
        forged = {
            "empty": "",
            "no dot": part + secret,
            "only the part": f"{part}.",
            "only the secret": secret,
            "non-hex part": f"{'g' * 16}.{secret}",
            "upper-case part": f"ABCDEF0123456789.{secret}",
            "short part": f"{part[:15]}.{secret}",
            "unknown part": f"{other}.{secret}",
            "known part, other secret": f"{part}.{'A' * 43}",
            "braces in the part": f"{{{part[:14]}}}.{secret}",
            "a hash tag and a key": f"{{ticket-{part}}}:~group",
            "two dots": f"{part}.{secret}.{secret}",
            "trailing newline": ticket + "\n",
            "surrogate": f"{part}.{secret[:42]}\ud800",
            "very long": ticket + "A" * 1_000_000,
            "very long part": "a" * 1_000_000 + "." + secret,
        }
        redeemer = SharedTickets(b, ttl_s=30)
        for name, text in forged.items():
            assert await redeemer.redeem(text) is None, name
        # None of them touched the real ticket or wrote anything.
        assert sorted(await keys_of(a)) == sorted([ticket_key(a, ticket), group_key(a, ALICE)])
        assert await redeemer.redeem(ticket) == ALICE


@pytest.mark.parametrize(
    "claims",
    [
        {"when": datetime(2024, 1, 1, tzinfo=UTC)},
        {"roles": ("admin", "viewer")},
        {"groups": {"a", "b"}},
        {"ratio": math.nan},
        {"by_id": {1: "one"}},
    ],
    ids=["datetime", "tuple", "set", "nan", "int-key"],
)
async def test_claims_that_would_not_come_back_the_same_are_refused(
    redis_server: RedisServer, claims: dict[str, Any]
) -> None:
    async with store_on(redis_server) as store:
        tickets = SharedTickets(store, ttl_s=30)
        name = next(iter(claims))
        with pytest.raises(UnshareableClaims, match=repr(name)) as refused:
            await tickets.issue(Principal("carol", {"fine": 1, **claims}))
        assert "'fine'" not in str(refused.value)
        # Nothing was stored for a ticket that was never issued, not even the principal's list.
        assert await keys_of(store) == []


async def test_redis_holds_no_usable_ticket(redis_server: RedisServer) -> None:
    async with store_on(redis_server) as store:
        tickets = SharedTickets(store, ttl_s=30)
        issued = [t for t in [await tickets.issue(ALICE) for _ in range(3)] if t is not None]
        assert len(issued) == 3
        group = group_key(store, ALICE)
        keys = await keys_of(store)
        # Keyed by the ticket's SHA-256: the server finds it, a key listing shows no ticket.
        assert sorted(keys) == sorted([group, *(ticket_key(store, t) for t in issued)])
        values = [text(await store.client.get(key)) for key in keys if key != group]
        listed = [text(name) for name in await store.client.lrange(group, 0, -1)]
        # The principal's list holds the same digests, newest last.
        assert listed == [sha256(t) for t in issued]
        for ticket in issued:
            assert not any(ticket in key or ticket.split(".")[1] in key for key in keys)
            assert not any(ticket.split(".")[1] in value for value in [*values, *listed])
        assert not any(ALICE.id in key for key in keys)
        assert [json.loads(value)["id"] for value in values] == [ALICE.id] * 3


async def test_without_redis_issuing_and_redeeming_raise_connection_error() -> None:
    server = RedisServer()
    await asyncio.to_thread(require, server.start)
    try:
        async with store_on(server) as store:
            tickets = SharedTickets(store, ttl_s=30)
            ticket = await tickets.issue(ALICE)
            assert ticket is not None
            await asyncio.to_thread(server.kill)
            with pytest.raises(ConnectionError):
                await tickets.issue(ALICE)
            with pytest.raises(ConnectionError):
                await tickets.redeem(ticket)
            await asyncio.to_thread(server.start)  # empty, so the cleanup finds no keys
    finally:
        await asyncio.to_thread(server.close)


async def test_without_redis_a_ticket_is_refused_503_and_its_socket_1013() -> None:
    token = "t0ken-for-the-outage"
    bearer = {"Authorization": f"Bearer {token}"}
    server = RedisServer()
    await asyncio.to_thread(require, server.start)
    try:
        settings = BridgeSettings(token=token, redis_url=server.url, cluster="tickets-outage")
        app = create_app(settings)
        bridge = app.state.bridge
        assert isinstance(bridge.tickets, SharedTickets)
        async with asyncio.timeout(30), serve_app(app) as served:
            endpoint = f"{served.http_url}/ws-ticket"
            issued = await http(endpoint, "POST", bearer)
            assert issued.status == 200, issued.body
            ticket = issued.json()["ticket"]
            await asyncio.to_thread(server.kill)
            with captured_logs() as logs:
                refused = await http(endpoint, "POST", bearer)
                assert refused.status == 503
                assert refused.headers["retry-after"] == "2"
                assert refused.headers["cache-control"] == "no-store"
                assert "cannot be reached" in refused.json()["error"]
                # Fails closed: the socket is refused, as "try later", not let in.
                assert await refused_with(served.ws_url("t") + f"?ticket={ticket}") == 1013
            assert logs.errors() == [] and logs.tracebacks() == []
            assert any("ticket store cannot be reached" in r.getMessage() for r in logs.records)
            assert not any(ticket in r.getMessage() for r in logs.records)
            await bridge.aclose()
    finally:
        await asyncio.to_thread(server.close)


async def test_a_hook_with_unshareable_claims_gets_no_ticket_and_the_log_says_why(
    redis_server: RedisServer,
) -> None:
    async def hook(_connection: HTTPConnection) -> Principal:
        return Principal("dave", {"since": datetime(2024, 1, 1, tzinfo=UTC), "plan": "pro"})

    async with store_on(redis_server) as store:
        settings = BridgeSettings(redis_url=redis_server.url, cluster=store.cluster)
        app = create_app(settings, authenticate=hook)
        async with asyncio.timeout(30), serve_app(app) as served:
            with captured_logs() as logs:
                asked = await http(f"{served.http_url}/ws-ticket", "POST")
            await app.state.bridge.aclose()
        assert asked.status == 500 and "ticket" not in asked.json()
        assert logs.tracebacks() == []
        (line,) = logs.errors()
        assert "'since'" in line and "'plan'" not in line and "2024" not in line
        assert await keys_of(store) == []
