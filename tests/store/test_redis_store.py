"""The Redis store beyond the contract: its keys and TTLs as Redis holds them, real expiry,
namespaces, a Redis that is missing at start or lost while running, and a session retired by
one bridge into Redis and served from there by another."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import websockets

from bridge import BridgeSettings, create_app
from bridge.redis_store import RedisStore, RedisUnavailable, redact_url
from bridge.testing import ScriptedModel, call, serve_app
from bridge.testing.redis_server import RedisServer, free_port
from tests.store.support import cluster_name, require, store_on
from tests.store.test_store_contract import session_record

BOUND_S = 10


async def test_the_keys_are_namespaced_with_the_types_and_ttls_documented(
    redis_store: RedisStore,
) -> None:
    store, client = redis_store, redis_store.client
    await store.put("s1", session_record(), ttl_s=30)
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    prefix = f"bridge:{store.cluster}:{{s1}}:"
    found = sorted([k.decode() async for k in client.scan_iter(f"{store.namespace}*")])
    # The record's lists that are empty in this session (no turn yet, no finished call, no
    # decision) are simply absent, as empty lists are in Redis.
    assert found == [prefix + part for part in ("frames", "owner", "record")]
    assert sorted(store.keys_of("s1")) == sorted(
        prefix + part for part in ("owner", "record", "turns", "frames", "finished", "decided")
    )
    assert await client.type(prefix + "record") == b"hash"
    assert await client.type(prefix + "frames") == b"list"
    assert await client.type(prefix + "owner") == b"string"
    assert sorted(await client.hkeys(prefix + "record")) == [b"head", b"tools"]
    assert await client.llen(prefix + "frames") == 3
    assert await client.get(prefix + "owner") == b"worker-a"
    for part in ("record", "frames"):
        assert 29_000 < await client.pttl(prefix + part) <= 30_000
    assert 4_000 < await client.pttl(prefix + "owner") <= 5_000
    # A renewal sets the lease's TTL afresh, longer or shorter; another owner's attempt does not.
    assert await store.acquire("s1", "worker-a", ttl_s=60)
    assert 59_000 < await client.pttl(prefix + "owner") <= 60_000
    assert not await store.acquire("s1", "worker-b", ttl_s=1)
    assert 59_000 < await client.pttl(prefix + "owner") <= 60_000


async def test_redis_itself_expires_records_and_leases(redis_store: RedisStore) -> None:
    store = redis_store
    await store.put("s1", {"v": 1}, ttl_s=0.03)
    assert await store.acquire("s1", "worker-a", ttl_s=0.03)
    assert 0 < await store.client.pttl(store.record_key("s1")) <= 30
    assert 0 < await store.client.pttl(store.owner_key("s1")) <= 30
    # Expiry by Redis's own clock is what is tested here, so the test polls for it, bounded:
    # there is no event to wait on (keyspace notifications are off, as in production).
    for _ in range(400):
        if await store.get("s1") is None and await store.owner("s1") is None:
            break
        await asyncio.sleep(0.005)
    else:
        pytest.fail("Redis kept a 30 ms record or lease for 2 s")
    assert await store.acquire("s1", "worker-b", ttl_s=5)


async def test_clusters_on_one_redis_do_not_see_each_other(redis_server: RedisServer) -> None:
    async with store_on(redis_server) as blue, store_on(redis_server) as green:
        await blue.put("s1", {"cluster": "blue"}, ttl_s=60)
        await green.put("s1", {"cluster": "green"}, ttl_s=60)
        assert await blue.acquire("s1", "worker-a", ttl_s=60)
        assert await green.acquire("s1", "worker-b", ttl_s=60)
        await blue.delete("s1")
        assert await blue.get("s1") is None and await blue.owner("s1") is None
        assert await green.get("s1") == {"cluster": "green"}
        assert await green.owner("s1") == "worker-b"


def test_cluster_names_that_could_collide_are_refused() -> None:
    for bad in ["", "a:b", "a*", "a b", "x" * 65]:
        with pytest.raises(ValueError, match="cluster name"):
            RedisStore(None, bad)  # type: ignore[arg-type]


def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact_url("rediss://app:s3cret@[::1]:6380/2") == "rediss://app:***@[::1]:6380/2"
    assert "s3cret" not in redact_url("redis://app:s3cret@host:notaport/0")


async def test_an_unreachable_redis_fails_fast_and_names_no_secret() -> None:
    url = f"redis://app:s3cret@127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    with pytest.raises(RedisUnavailable) as caught:
        await RedisStore.connect(url, "c1", timeout_s=1)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "s3cret" not in message and "redis://app:***@127.0.0.1" in message
    assert isinstance(caught.value, ConnectionError)  # callers need not import redis


async def test_refused_credentials_fail_the_start_and_name_no_secret() -> None:
    async with RedisServer(extra_args=("--requirepass", "right-pw")) as server:
        base = server.url.removeprefix("redis://")
        for url in (f"redis://{base}", f"redis://:wrong-pw@{base}"):
            with pytest.raises(RedisUnavailable) as caught:
                await RedisStore.connect(url, "c1", timeout_s=1)
            assert "wrong-pw" not in str(caught.value) and "right-pw" not in str(caught.value)
        store = await RedisStore.connect(f"redis://:right-pw@{base}", "c1", timeout_s=1)
        assert await store.healthy()
        await store.close()


async def test_a_redis_lost_while_running_is_reported_and_found_again() -> None:
    server = RedisServer()
    await asyncio.to_thread(require, server.start)
    try:
        store = await RedisStore.connect(server.url, cluster_name(), timeout_s=1)
        await store.put("s1", {"v": 1}, ttl_s=60)
        assert await store.acquire("s1", "worker-a", ttl_s=60)
        assert await store.healthy()
        await asyncio.to_thread(server.kill)
        assert not await store.healthy()
        for attempt in (store.get("s1"), store.acquire("s1", "worker-a", 5)):
            with pytest.raises(RedisUnavailable, match="failed on"):
                await attempt
        # Back on the same port, empty (no persistence): the same store serves again, the
        # lease script is loaded again on its own, and nothing needed a restart.
        await asyncio.to_thread(server.start)
        assert await store.healthy()
        assert await store.get("s1") is None
        assert await store.acquire("s1", "worker-b", ttl_s=60)
        await store.close()
    finally:
        await asyncio.to_thread(server.close)


# A session retired into Redis -----------------------------------------------------------------

TOOLS = [
    {
        "name": "pick_colour",
        "description": "Ask the user to pick a colour.",
        "parameters": {
            "type": "object",
            "properties": {"hint": {"type": "string", "maxLength": 200}},
        },
    },
    {
        "name": "get_location",
        "description": "The user's approximate location, if they allow it.",
        "parameters": {"type": "object", "properties": {}},
    },
    {
        "name": "show_toast",
        "description": "Show a short message in the page.",
        "parameters": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "seconds": {"type": "integer"}},
            "required": ["text"],
        },
    },
]


class WatchedStore(RedisStore):
    """Tells the test when a record was put, instead of the test polling for it."""

    stored: asyncio.Event

    async def put(self, session_id: str, record: dict[str, Any], ttl_s: float) -> None:
        await super().put(session_id, record, ttl_s)
        self.stored.set()


async def _recv(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await ws.recv()))


async def _run(ws: Any, text: str) -> list[dict[str, Any]]:
    """Send a message, answer every tool request, and return the frames up to `complete`."""
    await ws.send(json.dumps({"type": "message", "content": text}))
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] != "complete":
        frame = await _recv(ws)
        frames.append(frame)
        if frame["type"] == "tool_request":
            answer = {"type": "tool_response", "id": frame["id"], "result": {"colour": "teal"}}
            await ws.send(json.dumps(answer))
    return frames


async def test_a_retired_session_is_kept_in_redis_and_served_by_another_bridge(
    redis_server: RedisServer,
) -> None:
    runs = 5
    steps: list[list[Any]] = []
    for n in range(runs):
        steps += [["Let me ask. ", call("pick_colour", {"hint": f"round {n}"})], ["Teal it is."]]
    store = await WatchedStore.connect(redis_server.url, cluster_name())
    store.stored = asyncio.Event()
    settings = BridgeSettings(resume_grace_s=0.05)
    first = create_app(settings, model=ScriptedModel(steps), store=store)
    second_model = ScriptedModel([["Still teal."]])
    second = create_app(settings, model=second_model, store=store)
    try:
        async with asyncio.timeout(BOUND_S):
            async with serve_app(first) as server, websockets.connect(server.ws_url("kept")) as ws:
                await ws.send(json.dumps({"type": "hello", "protocol": 1, "tools": TOOLS}))
                token = (await _recv(ws))["resume_token"]
                for n in range(runs):
                    frames = await _run(ws, f"what colour, round {n}?")
                    assert frames[-1]["reason"] == "done"
            await store.stored.wait()
            # What one idle session costs Redis (docs/scale-out.md has the figure).
            usage = 0
            for key in store.keys_of("kept"):
                usage += await store.client.memory_usage(key) or 0
            print(f"\nMEMORY USAGE of an idle session after {runs} runs: {usage} bytes")
            assert 0 < usage < 32_768
            key = store.record_key("kept")
            assert 0 < await store.client.pttl(key) <= settings.session_ttl_s * 1000
            async with serve_app(second) as server, websockets.connect(server.ws_url("kept")) as ws:
                resume = {"token": token, "last_seq": frames[-1]["seq"]}
                hello = {"type": "hello", "protocol": 1, "tools": TOOLS, "resume": resume}
                await ws.send(json.dumps(hello))
                ready = await _recv(ws)
                assert ready["resumed"]["from_seq"] == frames[-1]["seq"] + 1
                again = await _run(ws, "and now?")
        assert again[0]["seq"] == frames[-1]["seq"] + 1
        assert "".join(f["content"] for f in again if f["type"] == "token") == "Still teal."
        # The second bridge's model saw the whole conversation the first one had.
        assert len(second_model.requests[0]) == 4 * runs + 1
    finally:
        await store.client.delete(*store.keys_of("kept"))
        await store.close()
