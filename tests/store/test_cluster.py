"""Two workers on one real Redis, in this process: a session moves to the worker its client's
connection lands on, with its run, its pending call and its seq, and nothing runs twice."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import websockets

from bridge import BridgeSettings, create_app
from bridge.testing import RunningServer, ScriptedModel, call, serve_app
from bridge.testing.redis_server import RedisServer

BOUND_S = 15
TOOL = {"name": "lookup", "parameters": {"type": "object"}}


@asynccontextmanager
async def workers(
    redis_server: RedisServer, model: ScriptedModel, count: int = 2, **settings: Any
) -> AsyncIterator[list[RunningServer]]:
    cluster = f"t{secrets.token_hex(4)}"
    config = BridgeSettings(
        redis_url=redis_server.url, cluster=cluster, owner_lease_s=1.0, **settings
    )
    async with AsyncExitStack() as stack:
        servers = []
        for _ in range(count):
            app = create_app(config, model=model)
            servers.append(await stack.enter_async_context(serve_app(app)))
            stack.push_async_callback(app.state.bridge.aclose)
        yield servers


async def recv(ws: Any) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def until(ws: Any, kind: str) -> list[dict[str, Any]]:
    frames = [await recv(ws)]
    while frames[-1]["type"] != kind:
        frames.append(await recv(ws))
    return frames


async def test_a_session_moves_to_the_worker_its_client_comes_back_to(
    redis_server: RedisServer,
) -> None:
    model = ScriptedModel([["Looking. ", call("lookup", {"q": "x"})], ["Found it."]])
    async with workers(redis_server, model) as (first, second), asyncio.timeout(BOUND_S):
        async with websockets.connect(first.ws_url("moving")) as ws:
            await ws.send(json.dumps({"type": "hello", "protocol": 1, "tools": [TOOL]}))
            token = (await recv(ws))["resume_token"]
            await ws.send(json.dumps({"type": "message", "content": "go"}))
            seen = await until(ws, "tool_request")
        request = seen[-1]
        async with websockets.connect(second.ws_url("moving")) as ws:
            resume = {"token": token, "last_seq": request["seq"]}
            await ws.send(
                json.dumps({"type": "hello", "protocol": 1, "tools": [TOOL], "resume": resume})
            )
            ready = await recv(ws)
            assert ready["resumed"] == {
                "from_seq": request["seq"] + 1,
                "pending_calls": [request["id"]],
                "pending_approvals": [],
                "gap": False,
            }
            answer = {"type": "tool_response", "id": request["id"], "result": "x found"}
            await ws.send(json.dumps(answer))
            rest = await until(ws, "complete")
    assert rest[-1]["reason"] == "done"
    assert "".join(f["content"] for f in rest if f["type"] == "token") == "Found it."
    seqs = [f["seq"] for f in seen + rest if "seq" in f]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    results = [f for f in rest if f["type"] == "tool_result"]
    assert [(r["id"], r["status"]) for r in results] == [(request["id"], "ok")]
    assert len(model.requests) == 2  # the first step was not made again


async def test_a_stranger_on_another_worker_does_not_move_the_session(
    redis_server: RedisServer,
) -> None:
    model = ScriptedModel([[call("lookup", {})], ["done"]])
    async with workers(redis_server, model) as (first, second), asyncio.timeout(BOUND_S):
        async with websockets.connect(first.ws_url("kept")) as owner:
            await owner.send(json.dumps({"type": "hello", "protocol": 1, "tools": [TOOL]}))
            await recv(owner)
            await owner.send(json.dumps({"type": "message", "content": "go"}))
            await until(owner, "tool_request")
            async with websockets.connect(second.ws_url("kept")) as stranger:
                resume = {"token": "guess", "last_seq": 0}
                await stranger.send(json.dumps({"type": "hello", "protocol": 1, "resume": resume}))
                assert (await recv(stranger))["code"] == "resume_denied"
            await owner.send(json.dumps({"type": "ping", "nonce": "still"}))
            pong = await recv(owner)
    assert pong["type"] == "pong" and pong["nonce"] == "still"


async def test_two_connections_arriving_at_once_make_one_runtime_and_the_owner_closes_1012(
    redis_server: RedisServer,
) -> None:
    model = ScriptedModel([["Looking. ", call("lookup", {"q": "x"})], ["Found it."]])
    config = BridgeSettings(
        redis_url=redis_server.url, cluster=f"t{secrets.token_hex(4)}", owner_lease_s=1.0
    )
    apps = [create_app(config, model=model), create_app(config, model=model)]
    hubs = [app.state.bridge.hub for app in apps]
    # Every runtime the second worker makes for the session, whether it keeps it or not.
    made: list[Any] = []
    create = hubs[1]._create

    def counted(session: Any) -> Any:
        made.append(create(session))
        return made[-1]

    hubs[1]._create = counted
    async with AsyncExitStack() as stack, asyncio.timeout(BOUND_S):
        first, second = [await stack.enter_async_context(serve_app(app)) for app in apps]
        for app in apps:
            stack.push_async_callback(app.state.bridge.aclose)
        owner = await websockets.connect(first.ws_url("twice"))
        await owner.send(json.dumps({"type": "hello", "protocol": 1, "tools": [TOOL]}))
        token = (await recv(owner))["resume_token"]
        await owner.send(json.dumps({"type": "message", "content": "go"}))
        request = (await until(owner, "tool_request"))[-1]
        resume = {"token": token, "last_seq": request["seq"]}
        hello = json.dumps({"type": "hello", "protocol": 1, "tools": [TOOL], "resume": resume})
        a = await websockets.connect(second.ws_url("twice"))
        b = await websockets.connect(second.ws_url("twice"))
        # Both hellos reach the second worker while the first still runs the session.
        await asyncio.gather(a.send(hello), b.send(hello))
        readies = await asyncio.gather(recv(a), recv(b))
        assert [r["type"] for r in readies] == ["ready", "ready"]
        # The connection on the worker that let the session go is told to come back (1012).
        await owner.wait_closed()
        assert owner.close_code == 1012
        # One arrival took the session over and the other attached to it after: one runtime,
        # the earlier connection replaced (4409) by the later one.
        done, _ = await asyncio.wait(
            [asyncio.create_task(ws.wait_closed()) for ws in (a, b)],
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert len(done) == 1
        replaced, live = (a, b) if a.close_code is not None else (b, a)
        assert replaced.close_code == 4409 and live.close_code is None
        assert hubs[1].runtime("twice") is not None and hubs[0].runtime("twice") is None
        assert made == [hubs[1].runtime("twice")]
        await live.send(
            json.dumps({"type": "tool_response", "id": request["id"], "result": "x found"})
        )
        rest = await until(live, "complete")
        await live.close()
    assert rest[-1]["reason"] == "done"
    assert len(model.requests) == 2  # nothing ran twice
