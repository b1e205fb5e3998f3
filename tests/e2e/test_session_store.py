"""A session whose client did not come back in time leaves only its record in the store, and a
later client (on this server, or on another one sharing the store) is served from it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from bridge import BridgeSettings, MemoryStore, create_app
from bridge.conversation import UserTurn
from bridge.testing import ScriptedModel, serve_app

BOUND_S = 10


class WatchedStore(MemoryStore):
    """Tells the test when a record was put, instead of the test polling for it."""

    def __init__(self) -> None:
        super().__init__()
        self.stored = asyncio.Event()

    async def put(self, session_id: str, record: dict[str, Any], ttl_s: float) -> None:
        await super().put(session_id, record, ttl_s)
        self.stored.set()


async def _recv(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await ws.recv()))


async def _run(ws: Any, text: str) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "message", "content": text}))
    frames = []
    while not frames or frames[-1]["type"] != "complete":
        frames.append(await _recv(ws))
    return frames


async def test_a_retired_session_is_served_from_its_record_by_another_server() -> None:
    store = WatchedStore()
    first_model = ScriptedModel([["first answer"]])
    second_model = ScriptedModel([["second answer"]])
    settings = BridgeSettings(resume_grace_s=0.05)
    first_app = create_app(settings, model=first_model, store=store)
    second_app = create_app(settings, model=second_model, store=store)
    async with asyncio.timeout(BOUND_S):
        async with serve_app(first_app) as first:
            async with websockets.connect(first.ws_url("kept")) as ws:
                await ws.send(json.dumps({"type": "hello", "protocol": 1}))
                token = (await _recv(ws))["resume_token"]
                frames = await _run(ws, "remember me")
            await store.stored.wait()
            assert first_app.state.bridge.hub.runtime("kept") is None
        async with serve_app(second_app) as second:
            async with websockets.connect(second.ws_url("kept")) as ws:
                resume = {"token": token, "last_seq": frames[-1]["seq"]}
                await ws.send(json.dumps({"type": "hello", "protocol": 1, "resume": resume}))
                ready = await _recv(ws)
                assert ready["resumed"] == {
                    "from_seq": frames[-1]["seq"] + 1,
                    "pending_calls": [],
                    "pending_approvals": [],
                    "gap": False,
                }
                again = await _run(ws, "and now?")
    assert again[0]["seq"] == frames[-1]["seq"] + 1
    assert "".join(f["content"] for f in again if f["type"] == "token") == "second answer"
    asked = [t.content for t in second_model.requests[0] if isinstance(t, UserTurn)]
    assert asked == ["remember me", "and now?"]


async def test_a_retired_session_still_refuses_a_wrong_token() -> None:
    store = WatchedStore()
    app = create_app(BridgeSettings(resume_grace_s=0.05), store=store)
    async with asyncio.timeout(BOUND_S), serve_app(app) as server:
        async with websockets.connect(server.ws_url("guarded")) as ws:
            await ws.send(json.dumps({"type": "hello", "protocol": 1}))
            await _recv(ws)
        await store.stored.wait()
        async with websockets.connect(server.ws_url("guarded")) as ws:
            resume = {"token": "not-the-token", "last_seq": 0}
            await ws.send(json.dumps({"type": "hello", "protocol": 1, "resume": resume}))
            assert (await _recv(ws))["code"] == "resume_denied"
            try:
                await ws.recv()
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4403
            else:
                raise AssertionError("the connection should have closed")
