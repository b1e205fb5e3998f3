"""Redis stopped and started again (empty, on the same port) while clients run tool calls on
two workers: new connections are refused with 1013 while it is down, `/healthz` says so, the
workers stay up and their live sessions carry on in memory; once Redis is back the records of
those sessions are stored again and service resumes without restarting any worker."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections import Counter
from typing import Any

import websockets

from bridge.redis_store import RedisStore
from bridge.testing import FaultProxy, OpenAIServer, Reply, tool_call
from bridge.testing.redis_server import RedisServer
from bridge_client import BridgeClient
from tests.scaleout.support import (
    Decider,
    healthz,
    running_cluster,
    since_last_user,
    until,
)
from tests.store.support import require

BOUND_S = 45
CALLS = 3
CLIENTS = 3


def decide(body: dict[str, Any]) -> Reply:
    text, steps = since_last_user(body.get("messages", []))
    tag = text.split()[-1]
    done = sum(1 for m in steps if m.get("role") == "tool")
    if done < CALLS:
        return Reply([f"{done} "], calls=[tool_call("tick", {"tag": tag, "n": done})])
    return Reply(["done ", tag])


class Load:
    """One client running one run after another until told to stop."""

    def __init__(self, url: str, number: int) -> None:
        self.session_id = f"load-{number}"
        self.number = number
        self.client = BridgeClient(
            f"{url}-{secrets.token_hex(3)}", backoff_base_s=0.05, backoff_cap_s=0.3
        )
        self.session_id = self.client.url.rsplit("/", 1)[1]
        self.ran: Counter[tuple[str, int]] = Counter()
        self.results: list[Any] = []
        self.stopping = False

        @self.client.tool
        async def tick(tag: str, n: int) -> str:
            """Count a step."""
            self.ran[(tag, n)] += 1
            return f"ticked {n}"

    async def go(self) -> None:
        async with self.client:
            while not self.stopping:
                tag = f"c{self.number}r{len(self.results)}"
                result = await self.client.run(f"tick {CALLS}: {tag}")
                self.results.append((tag, result))
            await self.client.bye()


async def refused_with(url: str) -> int | None:
    """Open a WebSocket, say hello, and return the close code the server ends it with."""
    async with websockets.connect(url, open_timeout=5) as ws:
        await ws.send(json.dumps({"type": "hello", "protocol": 1}))
        try:
            async with asyncio.timeout(5):
                while True:
                    await ws.recv()
        except websockets.ConnectionClosed:
            pass
    return ws.close_code


async def test_redis_stopped_and_restarted_under_load(
    model: OpenAIServer, cluster_name: str
) -> None:
    model.script = Decider(model, decide)
    redis = RedisServer()
    await asyncio.to_thread(require, redis.start)
    try:
        async with (
            running_cluster(redis, model, 2, cluster_name) as cluster,
            FaultProxy(cluster.balancer.host, cluster.balancer.port) as proxy,
            asyncio.timeout(BOUND_S),
        ):
            loads = [Load(proxy.ws_url("/ws/agent/outage"), n) for n in range(CLIENTS)]
            tasks = [asyncio.create_task(load.go()) for load in loads]
            try:
                await until(lambda: all(len(load.results) >= 2 for load in loads), 10, "runs")

                await asyncio.to_thread(redis.stop)
                down = {load.number: len(load.results) for load in loads}
                for worker in cluster.workers:
                    await until(
                        lambda w=worker: _health_is(w.http_url, 503, "down"), 5, "redis down"
                    )
                    # A new connection cannot be served without Redis: refused, try later.
                    assert await refused_with(worker.ws_url("new-during-outage")) == 1013
                # The live sessions carry on in the workers' memory.
                await until(
                    lambda: all(len(load.results) >= down[load.number] + 2 for load in loads),
                    10,
                    "runs during the outage",
                )
                assert all(w.alive for w in cluster.workers)

                await asyncio.to_thread(redis.start)  # same port, empty
                for worker in cluster.workers:
                    await until(lambda w=worker: _health_is(w.http_url, 200, "up"), 5, "redis up")
                # The workers stored the live sessions' records again.
                store = await RedisStore.connect(redis.url, cluster_name)
                try:

                    async def all_stored() -> bool:
                        records = [await store.get(load.session_id) for load in loads]
                        return all(r is not None for r in records)

                    await until(all_stored, 5, "records stored again")
                finally:
                    await store.close()

                # Service is back: a new session through the balancer (its health checks
                # bring the workers back within a second) ...
                async def new_session() -> bool:
                    try:
                        async with BridgeClient(
                            cluster.ws_url(f"after-{secrets.token_hex(3)}"), reconnect=False
                        ) as fresh:
                            result = await fresh.run("tick 0: fresh")
                        return result.reason == "done"
                    except (OSError, websockets.WebSocketException):
                        return False

                await until(new_session, 10, "a new session after the outage", every_s=0.2)
                # ... and the live sessions move between workers again: every client's
                # connection is cut, and each comes back to the other worker.
                back = {load.number: len(load.results) for load in loads}
                proxy.cut()
                await until(
                    lambda: all(len(load.results) >= back[load.number] + 2 for load in loads),
                    15,
                    "runs after a move",
                )
            finally:
                for load in loads:
                    load.stopping = True
                await asyncio.gather(*tasks)
            alive = [w.alive for w in cluster.workers]
            logs = cluster.logs()
    finally:
        await asyncio.to_thread(redis.close)

    assert all(alive), logs
    for load in loads:
        assert load.client.reconnects >= 1
        for tag, result in load.results:
            assert result.reason == "done", result.events
            assert result.text == "".join(f"{n} " for n in range(CALLS)) + f"done {tag}"
        assert len(load.ran) == CALLS * len(load.results)
        assert set(load.ran.values()) == {1}


async def _health_is(url: str, status: int, redis: str) -> bool:
    try:
        got, body = await healthz(url, timeout_s=3.0)
    except (OSError, TimeoutError, ValueError):
        return False
    return got == status and body.get("redis") == redis
