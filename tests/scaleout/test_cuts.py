"""Three real workers on one Redis behind a real round-robin HAProxy, 300 tool calls through the
Python client, the connection cut at seeded random points: every reconnect lands on the next
worker, which takes the session over, and still every handler runs once per call, every call
reaches the model with one result, and every run ends with its whole text."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import Counter
from typing import Any

from bridge.redis_store import RedisStore
from bridge.testing import FaultProxy, OpenAIServer, Reply, tool_call
from bridge.testing.redis_server import RedisServer
from tests.scaleout.support import (
    Decider,
    WatchingClient,
    owner_pid,
    running_cluster,
    since_last_user,
    tool_results,
)

SESSIONS = 10
RUNS = 3
CALLS = 10  # per run: 10 x 3 x 10 = 300 calls
BOUND_S = 60


def decide(body: dict[str, Any]) -> Reply:
    """Call `tick` CALLS times in a run (one call a step), then say it is done. The run's tag
    is the last word of its message; the call ids follow from the tag and the step, so a step
    made again after a move asks for the same call."""
    text, steps = since_last_user(body.get("messages", []))
    tag = text.split()[-1]
    done = sum(1 for m in steps if m.get("role") == "tool")
    if done < CALLS:
        call = tool_call("tick", {"tag": tag, "n": done}, id=f"call-{tag}-{done}")
        return Reply(text=["step ", f"{done} "], calls=[call])
    return Reply(text=["done ", tag])


def expected_text(tag: str) -> str:
    return "".join(f"step {n} " for n in range(CALLS)) + f"done {tag}"


async def test_300_calls_with_random_cuts_over_three_workers(
    redis: RedisServer, model: OpenAIServer, cluster_name: str
) -> None:
    model.script = Decider(model, decide)
    ran: Counter[tuple[str, int]] = Counter()
    store = await RedisStore.connect(redis.url, cluster_name)
    async with (
        running_cluster(redis, model, 3, cluster_name) as cluster,
        FaultProxy(cluster.balancer.host, cluster.balancer.port) as proxy,
    ):
        pids = {w.pid: w.number for w in cluster.workers}
        # Per session, the worker that sent each `ready`: the one that claimed the session
        # for that connection (it holds the owner lease when `ready` goes out).
        served: dict[str, list[int]] = {}
        reconnects = 0
        async with asyncio.timeout(BOUND_S):
            for number in range(SESSIONS):
                session_id = f"cut-{number}-{secrets.token_hex(4)}"
                order = served[session_id] = []

                async def watch(event: dict[str, Any], sid: str = session_id) -> None:
                    if event["type"] == "ready":
                        pid = owner_pid(await store.owner(sid))
                        served[sid].append(pids[pid] if pid is not None else -1)

                client = WatchingClient(
                    proxy.ws_url(session_id), watch, backoff_base_s=0.02, backoff_cap_s=0.2
                )

                @client.tool
                async def tick(tag: str, n: int) -> str:
                    """Count a step."""
                    ran[(tag, n)] += 1
                    return f"ticked {tag} {n}"

                # A session's first connection is not cut before its `ready`: a client that
                # never saw one has no resume token, and a hello without one is refused for a
                # session that exists (4403), on one worker as on several.
                proxy.random_cuts(None)
                async with client:
                    # Then every connection is cut at a random point in either direction, once
                    # every few calls on average (the first few hundred bytes of a connection,
                    # handshake and hello, always go through), starting with this one.
                    proxy.random_cuts(mean_bytes=2_500, seed=number, min_bytes=300)
                    proxy.cut()
                    for run in range(RUNS):
                        tag = f"s{number}r{run}"
                        result = await client.run(f"tick {CALLS} times: {tag}")
                        assert result.reason == "done", result
                        assert result.text == expected_text(tag), result.events
                    reconnects += client.reconnects
                    await client.bye()
                # A connection cut before its `ready` counts as a reconnect all the same.
                assert 1 < len(order) <= client.reconnects + 1
        logs = cluster.logs()
        workers_alive = [w.alive for w in cluster.workers]
        cuts = proxy.cuts
    await store.close()

    assert all(workers_alive), logs
    # Every handler ran once per call.
    assert len(ran) == SESSIONS * RUNS * CALLS
    assert set(ran.values()) == {1}, [k for k, v in ran.items() if v != 1]
    # Every call reached the model with exactly one result: a session's last request holds
    # its whole conversation.
    last: dict[str, dict[str, Any]] = {}
    for request in model.requests:
        text, _ = since_last_user(request.body.get("messages", []))
        last[text.split()[-1].split("r")[0]] = request.body
    assert len(last) == SESSIONS
    for body in last.values():
        calls, results = tool_results(body)
        assert len(calls) == len(set(calls)) == RUNS * CALLS
        assert {k: len(v) for k, v in results.items()} == dict.fromkeys(calls, 1)
        assert all("ticked" in v[0] for v in results.values())
    # The cuts happened and the client came back each time; the balancer sent each new
    # connection to the next worker, which took the session over.
    pairs = [(a, b) for order in served.values() for a, b in itertools.pairwise(order)]
    moves = sum(1 for a, b in pairs if a != b)
    assert cuts >= 50 and reconnects >= 50, (cuts, reconnects)
    assert {n for order in served.values() for n in order} == {0, 1, 2}, served
    # A connection cut before its `ready` took a turn of the round robin (and the session), so
    # now and then the next `ready` comes from the worker of the one before.
    assert moves >= 0.8 * len(pairs), served
    print(f"\n{cuts} cuts, {reconnects} reconnects, {moves} moves of {len(pairs)}")
