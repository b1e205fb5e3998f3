"""A worker renews all its leases in a few round trips: one at a time, 50,000 sessions (the
default `max_sessions`) would take longer to renew than a lease lasts."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.redis_store import RedisStore
from bridge.server.cluster import Cluster

SESSIONS = 2_500
LEASE_S = 30.0


async def test_a_renewal_round_renews_every_lease_a_thousand_to_a_round_trip(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = redis_store
    cluster = Cluster(store, lease_s=LEASE_S)
    ids = [f"renewed-{i}" for i in range(SESSIONS)]
    async with store.client.pipeline(transaction=False) as pipe:
        for session_id in ids:
            # Leases about to lapse: a renewal that reaches them puts them back to LEASE_S.
            pipe.set(store.owner_key(session_id), cluster.worker, px=5_000)
        await pipe.execute()
    cluster.owned.update(ids)
    # One taken by another worker meanwhile, one vanished (a Redis restarted empty).
    await store.client.set(store.owner_key(ids[7]), "another-worker", px=5_000)
    await store.client.delete(store.owner_key(ids[8]))
    lost: list[str] = []

    async def on_lost(session_id: str) -> None:
        lost.append(session_id)

    cluster._on_lost = on_lost
    trips: list[int] = []
    pipeline = store.client.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        async def executed(*a: Any, **k: Any) -> Any:
            trips.append(len(pipe.command_stack))
            return await execute(*a, **k)

        pipe.execute = executed  # type: ignore[method-assign]
        return pipe

    monkeypatch.setattr(store.client, "pipeline", counted)
    retaken = await cluster._renew_round()
    assert trips == [1_000, 1_000, 500]
    assert lost == [ids[7]] and ids[7] not in cluster.owned
    assert retaken == {ids[8]} and ids[8] in cluster.owned
    async with store.client.pipeline(transaction=False) as pipe:
        for session_id in ids:
            pipe.pttl(store.owner_key(session_id))
        ttls = await pipe.execute()
    renewed = [i for i, ttl in enumerate(ttls) if ttl > 5_000]
    assert len(renewed) == SESSIONS - 1 and 7 not in renewed
    assert all(ttl <= LEASE_S * 1000 for ttl in ttls)
    assert await store.owner(ids[0]) == cluster.worker
