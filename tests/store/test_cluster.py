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
