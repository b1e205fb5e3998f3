"""Three real workers on one Redis behind a real round-robin HAProxy, 300 tool calls through the
Python client, the connection cut at seeded random points: every reconnect lands on the next
worker, which takes the session over, and still every handler runs once per call, every call
reaches the model with one result, and every run ends with its whole text."""

from __future__ import annotations

import asyncio

from bridge.redis_store import RedisStore
from bridge.testing import FaultProxy, OpenAIServer
from bridge.testing.redis_server import RedisServer
from tests.scaleout.cuts import CutRuns
from tests.scaleout.support import Decider, running_cluster

BOUND_S = 60


async def test_300_calls_with_random_cuts_over_three_workers(
    redis: RedisServer, model: OpenAIServer, cluster_name: str
) -> None:
    runs = CutRuns(sessions=10, runs=3, calls=10)  # 10 x 3 x 10 = 300 calls
    model.script = Decider(model, runs.decide)
    store = await RedisStore.connect(redis.url, cluster_name)
    async with (
        running_cluster(redis, model, 3, cluster_name) as cluster,
        FaultProxy(cluster.balancer.host, cluster.balancer.port) as proxy,
    ):
        pids = {w.pid: w.number for w in cluster.workers}
        async with asyncio.timeout(BOUND_S):
            await runs.drive(proxy, store, pids)
        logs = cluster.logs()
        workers_alive = [w.alive for w in cluster.workers]
        cuts = proxy.cuts
    await store.close()

    assert all(workers_alive), logs
    runs.check(model, cuts, at_least=50)
