"""Resume through real uvicorn with raw WebSocket clients: replay, snapshot, refusals, bye, grace.

Raw `websockets` clients say exactly what goes over the wire, so these tests pin the server down
independently of the SDKs. Every wait is bounded; waiting for a grace to pass is waiting for the
run's `complete` to be posted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from bridge.conversation import ToolResult
from bridge.protocol import CompleteMessage, ToolCancelMessage
from bridge.testing import Hang, ScriptedModel, call
from tests.conftest import StartBridge
from tests.e2e.support import Departures, Watch, hub_of, runtime_of

BOUND_S = 10
Frame = dict[str, Any]
TOOL = {"name": "lookup", "parameters": {"type": "object"}}


async def recv(ws: ClientConnection) -> Frame:
    frame: Frame = json.loads(await ws.recv())
    return frame


async def read_until(ws: ClientConnection, kind: str) -> list[Frame]:
    frames = [await recv(ws)]
    while frames[-1]["type"] != kind:
        frames.append(await recv(ws))
    return frames


async def send(ws: ClientConnection, message: Frame) -> None:
    await ws.send(json.dumps(message))


async def hello(
    ws: ClientConnection, *, tools: list[Frame] | None = None, resume: Frame | None = None
) -> Frame:
    message: Frame = {"type": "hello", "protocol": 1, "tools": tools or []}
    if resume is not None:
        message["resume"] = resume
    await send(ws, message)
    return await recv(ws)


async def close_code(ws: ClientConnection) -> int | None:
    """Read until the server closes; return its close code."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as closed:
        return None if closed.rcvd is None else closed.rcvd.code


def drop(ws: ClientConnection) -> None:
    """The link dies: no close frame, no bye."""
    ws.transport.abort()


async def test_drop_mid_call_then_resume_replays_in_order_and_accepts_one_answer(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([["Looking ", "it up. ", call("lookup", {"q": "x"})], ["Found ", "it."]])
    async with start_bridge(model=model) as server, asyncio.timeout(BOUND_S):
        url = server.ws_url("resume-replay")
        async with websockets.connect(url) as ws:
            ready = await hello(ws, tools=[TOOL])
            token = ready["resume_token"]
            assert token and "resumed" not in ready
            await send(ws, {"type": "message", "content": "find x"})
            first_life = await read_until(ws, "tool_request")
            drop(ws)
        processed = first_life[0]["seq"]  # the client got further, but processed only run_started
        async with websockets.connect(url) as ws:
            ready = await hello(ws, tools=[TOOL], resume={"token": token, "last_seq": processed})
            request = first_life[-1]
            assert ready["type"] == "ready" and ready["resume_token"] == token
            assert ready["resumed"] == {
                "from_seq": processed + 1,
                "pending_calls": [request["id"]],
                "pending_approvals": [],
                "gap": False,
            }
            replayed = [await recv(ws) for _ in first_life[1:]]
            assert replayed == first_life[1:]  # same frames, same seqs, same order
            assert "redelivered" not in replayed[-1]
            await send(ws, {"type": "tool_response", "id": request["id"], "result": "x is 42"})
            rest = await read_until(ws, "complete")
            await send(ws, {"type": "tool_response", "id": request["id"], "result": "again"})
            duplicate = await recv(ws)
    assert [f["type"] for f in rest] == ["tool_result", "token", "token", "complete"]
    assert rest[0]["id"] == request["id"] and rest[0]["status"] == "ok"
    assert rest[-1]["reason"] == "done"
    seqs = [f["seq"] for f in first_life + rest]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert (duplicate["type"], duplicate["code"], duplicate["id"]) == (
        "error",
        "duplicate_response",
        request["id"],
    )
    results = [t for t in model.requests[1] if isinstance(t, ToolResult)]
    assert [r.data for r in results] == ["x is 42"]


async def test_resume_past_the_window_gets_a_gap_and_a_snapshot(start_bridge: StartBridge) -> None:
    model = ScriptedModel([["a ", "b ", "c ", "d ", "e ", call("lookup", {"q": "y"})], ["done"]])
    async with (
        start_bridge(model=model, replay_max_messages=4) as server,
        asyncio.timeout(BOUND_S),
    ):
        url = server.ws_url("resume-gap")
        async with websockets.connect(url) as ws:
            token = (await hello(ws, tools=[TOOL]))["resume_token"]
            await send(ws, {"type": "message", "content": "go"})
            first_life = await read_until(ws, "tool_request")
            drop(ws)
        request = first_life[-1]
        async with websockets.connect(url) as ws:
            ready = await hello(ws, tools=[TOOL], resume={"token": token, "last_seq": 1})
            snapshot = await recv(ws)
            redelivered = await recv(ws)
            await send(ws, {"type": "tool_response", "id": request["id"], "result": "y"})
            rest = await read_until(ws, "complete")
    assert ready["resumed"]["gap"] is True
    assert ready["resumed"]["pending_calls"] == [request["id"]]
    assert snapshot["type"] == "snapshot" and "seq" not in snapshot
    assert snapshot["last_seq"] == request["seq"]
    assert snapshot["pending_calls"] == [request["id"]]
    assert [(t["role"], t["content"]) for t in snapshot["turns"]] == [
        ("user", "go"),
        ("assistant", "a b c d e "),
    ]
    assert snapshot["turns"][1]["tool_calls"] == [
        {"id": request["id"], "name": "lookup", "arguments": {"q": "y"}, "status": "pending"}
    ]
    assert snapshot["run"]["run_id"] == request["run_id"]
    assert redelivered["type"] == "tool_request" and redelivered["redelivered"] is True
    assert redelivered["id"] == request["id"] and redelivered["seq"] == snapshot["last_seq"] + 1
    assert [f["type"] for f in rest] == ["tool_result", "token", "complete"]
    assert rest[-1]["reason"] == "done"


async def test_a_wrong_token_is_refused_and_the_live_session_is_untouched(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([["working", Hang()]])
    async with start_bridge(model=model) as server, asyncio.timeout(BOUND_S):
        url = server.ws_url("resume-denied")
        async with websockets.connect(url) as owner:
            token = (await hello(owner))["resume_token"]
            await send(owner, {"type": "message", "content": "go"})
            started = await read_until(owner, "token")
            async with websockets.connect(url) as intruder:
                error = await hello(intruder, resume={"token": token[:-2] + "xx", "last_seq": 1})
                assert (error["type"], error["code"]) == ("error", "resume_denied")
                assert "seq" not in error
                assert await close_code(intruder) == 4403
            # The owner still has its session, its run and its connection.
            await send(owner, {"type": "ping", "nonce": "still"})
            pong = await recv(owner)
            assert (pong["type"], pong["nonce"]) == ("pong", "still")
            await send(owner, {"type": "stop"})
            complete = await read_until(owner, "complete")
    assert complete[-1]["reason"] == "stopped"
    assert complete[-1]["run_id"] == started[0]["run_id"]
    assert pong["seq"] == started[-1]["seq"] + 1


async def test_resume_of_an_unknown_session_starts_a_fresh_one(start_bridge: StartBridge) -> None:
    model = ScriptedModel([["fresh"]])
    async with start_bridge(model=model) as server, asyncio.timeout(BOUND_S):
        async with websockets.connect(server.ws_url("never-seen")) as ws:
            ready = await hello(ws, tools=[TOOL], resume={"token": "whatever", "last_seq": 9})
            error = await recv(ws)
            await send(ws, {"type": "message", "content": "hi"})
            frames = await read_until(ws, "complete")
    assert ready["type"] == "ready" and "resumed" not in ready
    assert ready["resume_token"] and ready["resume_token"] != "whatever"
    assert ready["tools"]["accepted"] == ["lookup"]
    assert (error["type"], error["code"]) == ("error", "session_expired")
    assert frames[0]["type"] == "run_started" and frames[-1]["reason"] == "done"


async def test_bye_ends_the_session_at_once(start_bridge: StartBridge) -> None:
    model = ScriptedModel([[call("lookup")], ["never"]])
    async with start_bridge(model=model, resume_grace_s=60) as server, asyncio.timeout(BOUND_S):
        url = server.ws_url("resume-bye")
        departures = Departures(hub_of(server))
        async with websockets.connect(url) as ws:
            token = (await hello(ws, tools=[TOOL]))["resume_token"]
            await send(ws, {"type": "message", "content": "go"})
            request = (await read_until(ws, "tool_request"))[-1]
            watch = Watch(runtime_of(server, "resume-bye"))
            await send(ws, {"type": "bye"})
            assert await close_code(ws) == 1000
        await departures.wait()
        assert departures.for_good == [True]
        await watch.completed.wait()  # long before the 60 s grace
        async with websockets.connect(url) as ws:
            ready = await hello(ws, resume={"token": token, "last_seq": request["seq"]})
            expired = await recv(ws)
    cancels = watch.of(ToolCancelMessage)
    assert [(c.id, c.reason) for c in cancels] == [(request["id"], "disconnected")]
    assert [c.reason for c in watch.of(CompleteMessage)] == ["disconnected"]
    assert len(model.requests) == 1
    assert "resumed" not in ready and expired["code"] == "session_expired"


async def test_a_held_session_is_ended_after_the_grace(start_bridge: StartBridge) -> None:
    model = ScriptedModel([[call("lookup")], ["never"]])
    grace_s = 0.2
    async with (
        start_bridge(model=model, resume_grace_s=grace_s) as server,
        asyncio.timeout(BOUND_S),
    ):
        departures = Departures(hub_of(server))
        async with websockets.connect(server.ws_url("resume-grace")) as ws:
            await hello(ws, tools=[TOOL])
            await send(ws, {"type": "message", "content": "go"})
            request = (await read_until(ws, "tool_request"))[-1]
            runtime = runtime_of(server, "resume-grace")
            watch = Watch(runtime)
            drop(ws)
        loop = asyncio.get_running_loop()
        await departures.wait()
        left_at = loop.time()
        assert watch.posted == []  # nothing is cancelled when the connection goes
        await watch.completed.wait()
        ended_after = loop.time() - left_at
    assert departures.for_good == [False]
    assert ended_after >= grace_s * 0.9  # the loop's timer may fire a hair early
    cancels = watch.of(ToolCancelMessage)
    assert [(c.id, c.reason) for c in cancels] == [(request["id"], "disconnected")]
    (complete,) = watch.of(CompleteMessage)
    assert complete.reason == "disconnected" and complete.run_id == request["run_id"]
    results = [t for t in runtime.session.conversation if isinstance(t, ToolResult)]
    assert [(r.status.value, "disconnected" in r.content) for r in results] == [("cancelled", True)]
    assert len(model.requests) == 1


async def test_nothing_is_cancelled_while_the_grace_is_open(start_bridge: StartBridge) -> None:
    model = ScriptedModel([["Checking. ", call("lookup", {"q": "z"})], ["z found"]])
    async with start_bridge(model=model, resume_grace_s=30) as server, asyncio.timeout(BOUND_S):
        url = server.ws_url("resume-held")
        departures = Departures(hub_of(server))
        async with websockets.connect(url) as ws:
            token = (await hello(ws, tools=[TOOL]))["resume_token"]
            await send(ws, {"type": "message", "content": "go"})
            first_life = await read_until(ws, "tool_request")
            watch = Watch(runtime_of(server, "resume-held"))
            drop(ws)
        await departures.wait()
        held = hub_of(server).held
        request = first_life[-1]
        async with websockets.connect(url) as ws:
            resume = {"token": token, "last_seq": request["seq"]}
            ready = await hello(ws, tools=[TOOL], resume=resume)
            again = await recv(ws)
            await send(ws, {"type": "tool_response", "id": request["id"], "result": "z"})
            rest = await read_until(ws, "complete")
    assert held == 1
    assert ready["resumed"] == {
        "from_seq": request["seq"] + 1,
        "pending_calls": [request["id"]],
        "pending_approvals": [],
        "gap": False,
    }
    assert again["id"] == request["id"] and again["redelivered"] is True
    assert watch.of(ToolCancelMessage) == []
    assert [(f["type"], f.get("status") or f.get("reason")) for f in rest] == [
        ("tool_result", "ok"),
        ("token", None),
        ("complete", "done"),
    ]


async def test_a_held_run_goes_on_and_a_resume_replays_all_of_it(start_bridge: StartBridge) -> None:
    # More tokens than the send queue holds: a held session is bounded by its replay window,
    # not by the queue of a connection that is gone.
    release = asyncio.Event()
    pieces = [f"t{n} " for n in range(40)]
    model = ScriptedModel([["first ", Hang(release), *pieces]])
    async with start_bridge(model=model, send_queue_size=4) as server, asyncio.timeout(BOUND_S):
        url = server.ws_url("resume-streaming")
        departures = Departures(hub_of(server))
        async with websockets.connect(url) as ws:
            token = (await hello(ws))["resume_token"]
            await send(ws, {"type": "message", "content": "go"})
            seen = await read_until(ws, "token")
            watch = Watch(runtime_of(server, "resume-streaming"))
            drop(ws)
        await departures.wait()
        release.set()
        await watch.completed.wait()  # the whole run happened with nobody connected
        async with websockets.connect(url) as ws:
            resume = {"token": token, "last_seq": seen[-1]["seq"]}
            ready = await hello(ws, resume=resume)
            rest = await read_until(ws, "complete")
    assert ready["resumed"]["gap"] is False
    assert rest[0]["seq"] == seen[-1]["seq"] + 1
    text = "".join(f["content"] for f in rest if f["type"] == "token")
    assert text == "".join(pieces) and rest[-1]["reason"] == "done"


async def test_a_client_cut_before_its_ready_may_come_back_without_the_token(
    start_bridge: StartBridge,
) -> None:
    async with start_bridge() as server, asyncio.timeout(BOUND_S):
        url = server.ws_url("cut-early")
        departures = Departures(hub_of(server))
        async with websockets.connect(url) as first:
            await hello(first, tools=[TOOL])  # the server made the session; say it never arrived
            first.transport.abort()
        await departures.wait()
        async with websockets.connect(url) as again:
            ready = await hello(again, tools=[TOOL])
            assert ready["type"] == "ready" and ready["session_id"] == "cut-early"
            await send(again, {"type": "message", "content": "now it has happened"})
            await read_until(again, "complete")
            again.transport.abort()
        await departures.wait()
        # Once something has happened in it, the session needs its token again.
        async with websockets.connect(url) as late:
            await send(late, {"type": "hello", "protocol": 1})
            assert (await recv(late))["code"] == "resume_denied"
