"""A worker killed with SIGKILL while it owns a session: the client comes back through the
balancer to another worker, which takes the session over once the dead owner's lease lapses
and carries the run on from the last stored record.

Pending call: its id and deadline are kept, the client's answer is accepted by the new owner,
and nothing runs twice. Streaming step: the new owner makes it again, after a `step_retry`
with reason `owner_changed` that tells the client to drop what it had of the first attempt.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from typing import Any

from bridge.redis_store import RedisStore
from bridge.testing import OpenAIServer, Reply, tool_call
from bridge.testing.redis_server import RedisServer
from bridge_client import BridgeClient
from tests.scaleout.support import (
    WatchingClient,
    owner_pid,
    running_cluster,
    tool_results,
    until,
)

BOUND_S = 30


async def owner_worker_pid(store: RedisStore, session_id: str) -> int | None:
    return owner_pid(await store.owner(session_id))


async def test_sigkill_of_the_owner_while_a_tool_call_is_pending(
    redis: RedisServer, model: OpenAIServer, cluster_name: str
) -> None:
    model.add(
        Reply(["Looking. "], calls=[tool_call("lookup", {"q": "x"}, id="call-1")]),
        Reply(["Found ", "it."]),
    )
    session_id = f"crash-call-{secrets.token_hex(4)}"
    store = await RedisStore.connect(redis.url, cluster_name)
    ran: Counter[str] = Counter()
    asked = asyncio.Event()
    answer = asyncio.Event()
    requests: list[dict[str, Any]] = []
    readies: list[dict[str, Any]] = []

    def watch(event: dict[str, Any]) -> None:
        if event["type"] == "tool_request":
            requests.append(event)
        elif event["type"] == "ready":
            readies.append(event)

    async with (
        running_cluster(redis, model, 3, cluster_name) as cluster,
        asyncio.timeout(BOUND_S),
    ):
        client = WatchingClient(
            cluster.ws_url(session_id), watch, backoff_base_s=0.05, backoff_cap_s=0.3
        )

        @client.tool
        async def lookup(q: str) -> str:
            """Look something up; the test says when it is found."""
            ran[q] += 1
            asked.set()
            await answer.wait()
            return f"{q} found"

        async with client:
            run = asyncio.create_task(client.run("look it up"))
            await asked.wait()
            pid = await owner_worker_pid(store, session_id)
            assert pid is not None
            victim = cluster.worker_of(pid)
            victim.kill()
            killed = time.monotonic()
            # The client notices the connection is gone and comes back through HAProxy
            # (which tries the next worker when it finds the dead one); the worker it reaches
            # waits for the dead owner's lease (1 s) to lapse and takes the session over.
            await until(lambda: client.connected and client.reconnects >= 1, 10, "a resume")
            taken_after_s = time.monotonic() - killed
            new_pid = await owner_worker_pid(store, session_id)
            assert new_pid is not None and new_pid != pid
            assert cluster.worker_of(new_pid).alive
            # Only now does the handler answer: on a connection to the new owner.
            answer.set()
            result = await run
        survivors = [w.alive for w in cluster.workers if w is not victim]
        logs = cluster.logs()
    await store.close()

    assert all(survivors), logs
    assert result.reason == "done", result.events
    assert result.text == "Looking. Found it."
    assert ran == {"x": 1}
    # The resume listed the call as pending, under the id the client had been given, and the
    # new owner asked for it again under that id (the client's handler, still running, was
    # not started again).
    assert readies[-1]["resumed"]["pending_calls"] == [requests[0]["id"]]
    assert {r["id"] for r in requests} == {requests[0]["id"]}
    assert all(r.get("redelivered") for r in requests[1:]), requests
    assert 0.5 < taken_after_s < 5, taken_after_s
    # The model was asked twice (the first step was not made again), and the second request
    # holds the call's one result.
    assert len(model.requests) == 2
    calls, results = tool_results(model.requests[-1].body)
    assert calls == ["call-1"]
    assert results == {"call-1": ['"x found"']} or results == {"call-1": ["x found"]}


async def test_sigkill_of_the_owner_while_the_model_is_streaming(
    redis: RedisServer, model: OpenAIServer, cluster_name: str
) -> None:
    held = asyncio.Event()  # never set: the first attempt stalls until its worker dies
    model.add(
        Reply(["Hel", "lo ", "wor", "ld"], hold_after=2, release=held),
        Reply(["Hello ", "again."]),
    )
    session_id = f"crash-stream-{secrets.token_hex(4)}"
    store = await RedisStore.connect(redis.url, cluster_name)
    seen: list[dict[str, Any]] = []
    two_tokens = asyncio.Event()

    def watch(event: dict[str, Any]) -> None:
        seen.append(event)
        if sum(1 for e in seen if e["type"] == "token") >= 2:
            two_tokens.set()

    async with (
        running_cluster(redis, model, 3, cluster_name) as cluster,
        asyncio.timeout(BOUND_S),
    ):
        client = WatchingClient(
            cluster.ws_url(session_id), watch, backoff_base_s=0.05, backoff_cap_s=0.3
        )
        async with client:
            run = asyncio.create_task(client.run("say hello"))
            # The client has the first attempt's first two tokens; the model holds the rest.
            await two_tokens.wait()
            pid = await owner_worker_pid(store, session_id)
            assert pid is not None
            victim = cluster.worker_of(pid)
            victim.kill()
            result = await run
            new_pid = await owner_worker_pid(store, session_id)
        survivors = [w.alive for w in cluster.workers if w is not victim]
        logs = cluster.logs()
    await store.close()

    assert all(survivors), logs
    assert new_pid is not None and new_pid != pid
    assert result.reason == "done", result.events
    # The run's text is the final attempt's ...
    assert result.text == "Hello again."
    # ... and the client could tell the attempts apart: the first attempt's tokens, then the
    # step_retry saying the owner changed, then the new attempt's tokens.
    kinds = [
        (e["type"], e.get("content") or e.get("reason"))
        for e in result.events
        if e["type"] in ("token", "step_retry", "complete")
    ]
    assert kinds == [
        ("token", "Hel"),
        ("token", "lo "),
        ("step_retry", "owner_changed"),
        ("token", "Hello "),
        ("token", "again."),
        ("complete", "done"),
    ], result.events
    retry = next(e for e in result.events if e["type"] == "step_retry")
    assert retry["step"] == 1 and retry["attempt"] == 1
    # The new owner asked the model the same thing again.
    assert len(model.requests) == 2
    assert model.requests[0].body["messages"] == model.requests[1].body["messages"]


async def test_a_killed_worker_leaves_the_others_serving(
    redis: RedisServer, model: OpenAIServer, cluster_name: str
) -> None:
    """After a SIGKILL, new sessions through the balancer are served by the workers left."""
    async with (
        running_cluster(redis, model, 2, cluster_name) as cluster,
        asyncio.timeout(BOUND_S),
    ):
        cluster.workers[0].kill()
        for number in range(4):
            model.add(Reply(f"hi {number}"))
            async with BridgeClient(cluster.ws_url(f"after-{number}-{cluster_name}")) as client:
                result = await client.run("hello")
            assert (result.reason, result.text) == ("done", f"hi {number}")
        assert cluster.workers[1].alive
