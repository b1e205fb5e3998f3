"""Tickets shared through a real Redis: two `RedisStore` connections on one namespace stand for
two workers of a cluster. A ticket issued by one is redeemed by the other, once however many try
at the same moment, never after its TTL; a principal's tickets are bounded per window; claims
come back as they went in or are refused; Redis holds no usable ticket in its keys; and with
Redis gone `POST /ws-ticket` answers 503 and a ticket's socket is refused with 1013."""

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
        (key,) = [k for k in await keys_of(a) if ":ticket:" in k]
        assert 0 < await a.client.pttl(key) <= 80
        # Redis's own clock is what is tested, and it has no event to wait on: one wait, a
        # little past the TTL, bounded.
        await asyncio.sleep(0.15)
        assert await SharedTickets(b, ttl_s=0.08).redeem(ticket) is None


async def test_a_principal_gets_at_most_per_principal_tickets_a_window(
    redis_server: RedisServer,
) -> None:
    async with two_workers(redis_server) as (a, b):
        on_a = SharedTickets(a, ttl_s=30, per_principal=3)
        on_b = SharedTickets(b, ttl_s=30, per_principal=3)
        # The bound is the cluster's, not each worker's.
        issued = [await on_a.issue(ALICE), await on_b.issue(ALICE), await on_a.issue(ALICE)]
        assert all(issued) and len(set(issued)) == 3
        assert await on_b.issue(ALICE) is None
        assert await on_a.issue(ALICE) is None
        # Others are not held back, and the tickets already issued still work.
        assert await on_b.issue(Principal("bob")) is not None
        assert all([await on_b.redeem(t) == ALICE for t in issued if t is not None])
        # The window ends with the TTL: the counter expires in Redis.
        digest = hashlib.sha256(ALICE.id.encode()).hexdigest()
        assert 0 < await a.client.pttl(a.value_key(f"ticket-count:{digest}")) <= 30_000


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
        # Nothing was stored or counted for a ticket that was never issued.
        assert await keys_of(store) == []


async def test_redis_holds_no_usable_ticket(redis_server: RedisServer) -> None:
    async with store_on(redis_server) as store:
        tickets = SharedTickets(store, ttl_s=30)
        issued = [await tickets.issue(ALICE) for _ in range(3)]
        keys = await keys_of(store)
        values = [await store.client.get(key) for key in keys]
        for ticket in issued:
            assert ticket is not None
            assert not any(ticket in key for key in keys)
            assert not any(ticket.encode() in value for value in values if value is not None)
            # Keyed by the ticket's SHA-256: the server finds it, a key listing shows no ticket.
            digest = hashlib.sha256(ticket.encode()).hexdigest()
            assert store.value_key(f"ticket:{digest}") in keys
        assert not any(ALICE.id in key for key in keys)
        stored = [json.loads(v) for k, v in zip(keys, values, strict=True) if ":ticket:" in k]
        assert [s["id"] for s in stored] == [ALICE.id] * 3


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
