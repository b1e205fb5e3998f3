"""Delivery through the outbox, in memory: stalled readers, held sessions, resume."""

from __future__ import annotations

import asyncio
import json

import pytest

from bridge.agent.server_tools import ServerTools
from bridge.limits import SessionLimits
from bridge.protocol import ResumeRequest
from bridge.session import ResumePlan
from bridge.testing import Hang, MemoryClient, ResumeDenied, ScriptedModel, call, memory_runtime
from bridge.wire import parse_client_message
from tests.agent.support import (
    BOUND_S,
    StepModel,
    assert_each_call_settled_once,
    assert_seqs_consecutive,
    of_type,
    tool,
    until,
)


async def yield_to_the_run(times: int = 50) -> None:
    """Let every ready task run a while: a paused run stays paused however long this goes on."""
    for _ in range(times):
        await asyncio.sleep(0)


# A stalled client (issue 9 item 7) ------------------------------------------------------------


async def test_a_stalled_client_never_sees_a_cancel_before_its_request() -> None:
    # run_started and three tokens fill the reader's queue (size 4); the call comes after them
    # and times out while the client still reads nothing at all.
    model = StepModel([["a", "b", "c", call("fast")], ["after the timeout"]])
    runtime = memory_runtime(model, queue_size=4)
    client = MemoryClient(runtime)
    client.hello([tool("fast", timeout_ms=20)])
    await client.say("go")
    # The run goes on to its next step only once the call has ended (timed out).
    await model.wait_requests(2)
    assert runtime.outbox.log.backlog >= 4
    await client.wait_for("complete")
    mine = [f["type"] for f in client.frames if f.get("id") is not None]
    assert mine == ["tool_request", "tool_cancel", "tool_result"]
    assert of_type(client.frames, "tool_cancel")[0]["reason"] == "timed_out"
    assert_seqs_consecutive(client.frames)
    assert_each_call_settled_once(runtime, client)


async def test_a_client_that_keeps_its_queue_full_gets_requests_first_too() -> None:
    # A reader of its own: it takes a frame only when the queue (size 3) is full, so the run is
    # held at the limit the whole time and both calls time out behind the backlog.
    steps: list[list[object]] = [["x"] * 6 + [call("a"), call("b")], ["y"] * 6]
    model = StepModel(steps)
    runtime = memory_runtime(model, queue_size=3)
    wake = asyncio.Event()
    runtime.greet([tool("a", timeout_ms=10), tool("b", timeout_ms=15)], wake.set)
    await runtime.handle(parse_client_message(json.dumps({"type": "message", "content": "go"})))
    frames: list[dict[str, object]] = []
    async with asyncio.timeout(BOUND_S):
        while not of_type(frames, "complete"):
            wake.clear()
            while runtime.outbox.log.backlog >= 3 or not runtime.session.running:
                text = runtime.outbox.take()
                if text is None:
                    break
                frames.append(json.loads(text))
            if not of_type(frames, "complete"):
                await wake.wait()  # the next frame: a token, or a timeout's tool_cancel
    requests = of_type(frames, "tool_request")
    assert len(requests) == 2
    for request in requests:
        same = [f["type"] for f in frames if f.get("id") == request["id"]]
        assert same == ["tool_request", "tool_cancel", "tool_result"]
    assert_seqs_consecutive(frames)


# A held session -------------------------------------------------------------------------------


async def test_a_held_session_with_a_full_window_pauses_until_a_reader_returns() -> None:
    pieces = [f"{n:03d}" + "." * 46 for n in range(60)]  # 3,000 characters of text
    model = StepModel([list(pieces)])
    limits = SessionLimits(replay_max_bytes=1_000)
    runtime = memory_runtime(model, limits=limits)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("write a lot")
    first = await client.wait_for("token")
    seen = client.last_seq
    client.detach()
    # The window fills with the run's text; then the run waits for room.
    await until(lambda: runtime.outbox.log.full)
    streamed = model.streamed
    await yield_to_the_run()
    assert model.streamed == streamed < len(pieces)
    assert runtime.session.running
    # The client comes back: everything after what it saw is replayed, nothing was dropped.
    ready, snapshot = client.resume(seen)
    assert snapshot is None and ready["resumed"] == {
        "from_seq": seen + 1,
        "pending_calls": [],
        "pending_approvals": [],
        "gap": False,
    }
    await client.wait_for("complete")
    text = "".join(f["content"] for f in of_type(client.frames, "token"))
    assert first["content"] + text[len(first["content"]) :] == "".join(pieces)
    assert text == "".join(pieces)
    assert_seqs_consecutive(client.frames)


async def test_a_held_session_full_by_message_count_pauses_too() -> None:
    # Tokens coalesce while nobody reads, so the window fills in messages only when other
    # messages split them: here each step's text is followed by a server-side result.
    server_tools = ServerTools()

    @server_tools.tool
    def note() -> str:
        return "noted"

    steps: list[list[object]] = [[f"step {n} ", call("note")] for n in range(6)] + [["end"]]
    model = StepModel(steps)
    limits = SessionLimits(replay_max_messages=6, max_steps=10)
    runtime = memory_runtime(model, limits=limits, server_tools=server_tools)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("go")
    await client.wait_for("run_started")
    seen = client.last_seq
    client.detach()
    await until(lambda: runtime.outbox.log.full)
    await yield_to_the_run()
    asked = len(model.requests)
    await yield_to_the_run()
    assert len(model.requests) == asked < 7 and runtime.session.running
    request = ResumeRequest(token=runtime.session.resume_token, last_seq=seen)
    assert runtime.session.resume_plan(request) is ResumePlan.REPLAY
    ready, snapshot = client.resume(seen)
    assert snapshot is None and ready["resumed"]["gap"] is False
    await client.wait_for("complete")
    assert_seqs_consecutive(client.frames)
    assert (
        "".join(f["content"] for f in of_type(client.frames, "token"))
        == "".join(f"step {n} " for n in range(6)) + "end"
    )
    assert_each_call_settled_once(runtime, client)


async def test_a_held_run_goes_on_and_its_pending_call_keeps_waiting() -> None:
    model = ScriptedModel([["looking ", call("lookup")], ["found it"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime, handlers={"lookup": lambda args: "result"})
    client.hello([tool("lookup")])
    await client.say("go")
    await client.wait_for("run_started")
    seen = client.last_seq
    client.detach()  # before the request was read
    # The run reaches the call and waits on it; nothing cancels it while the client is away.
    await until(lambda: bool(runtime.session.calls.pending()))
    await yield_to_the_run()
    (pending,) = runtime.session.calls.pending()
    ready, snapshot = client.resume(seen)
    assert snapshot is None
    assert ready["resumed"] == {
        "from_seq": seen + 1,
        "pending_calls": [pending.id],
        "pending_approvals": [],
        "gap": False,
    }
    complete = await client.wait_for("complete")
    assert complete["reason"] == "done"
    (request,) = of_type(client.frames, "tool_request")
    assert "redelivered" not in request  # replayed with its original seq, not sent again
    assert request["seq"] == pending.request_seq
    assert client.handled == {pending.id: 1}
    assert_seqs_consecutive(client.frames)
    assert_each_call_settled_once(runtime, client)


async def test_a_request_already_read_is_redelivered_and_answered_once() -> None:
    model = ScriptedModel([[call("pay")], ["paid"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("pay")])
    await client.say("go")
    request = await client.wait_for("tool_request")
    client.detach()
    ready, snapshot = client.resume()
    assert snapshot is None
    assert ready["resumed"] == {
        "from_seq": request["seq"] + 1,
        "pending_calls": [request["id"]],
        "pending_approvals": [],
        "gap": False,
    }
    again = await client.wait_for("tool_request")
    assert again["id"] == request["id"] and again["redelivered"] is True
    assert again["seq"] > request["seq"]
    await client.answer(request["id"], "receipt")
    await client.answer(request["id"], "receipt")
    error = await client.wait_for("error")
    assert error["code"] == "duplicate_response"
    await client.wait_for("complete")
    assert [r["status"] for r in of_type(client.frames, "tool_result")] == ["ok"]
    assert_each_call_settled_once(runtime, client)


async def test_resume_after_the_window_moved_on_gets_a_snapshot_and_redelivery() -> None:
    model = ScriptedModel([["one ", "two ", "three ", call("confirm", {"x": 1})], ["yes"]])
    runtime = memory_runtime(model, limits=SessionLimits(replay_max_messages=2))
    client = MemoryClient(runtime)
    client.hello([tool("confirm")])
    await client.say("go")
    await client.wait_for("tool_request")
    client.detach()
    # The client comes back having processed only seq 1: the window no longer holds seq 2.
    ready, snapshot = client.resume(1)
    assert snapshot is not None and ready["resumed"]["gap"] is True
    (pending,) = runtime.session.calls.pending()
    assert ready["resumed"]["pending_calls"] == [pending.id]
    assert snapshot["pending_calls"] == [pending.id]
    assert [t["role"] for t in snapshot["turns"]] == ["user", "assistant"]
    assert snapshot["turns"][1]["content"] == "one two three "
    assert snapshot["turns"][1]["tool_calls"] == [
        {"id": pending.id, "name": "confirm", "arguments": {"x": 1}, "status": "pending"}
    ]
    # Live traffic follows the snapshot, starting with the request sent again.
    request = await client.wait_for("tool_request")
    assert request["redelivered"] is True and request["id"] == pending.id
    assert request["seq"] == snapshot["last_seq"] + 1
    await client.answer(pending.id, True)
    assert (await client.wait_for("complete"))["reason"] == "done"
    assert_each_call_settled_once(runtime, client)


async def test_resume_from_zero_is_a_snapshot_of_the_conversation_so_far() -> None:
    model = ScriptedModel([["first answer"], ["second ", Hang()]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("first")
    await client.wait_for("complete")
    await client.say("second")
    await client.wait_for("token")
    client.detach()
    reloaded = MemoryClient(runtime)  # a page reload: nothing kept but the token
    ready, snapshot = reloaded.resume(0)
    assert snapshot is not None and ready["resumed"]["gap"] is True
    assert [(t["role"], t["content"]) for t in snapshot["turns"]] == [
        ("user", "first"),
        ("assistant", "first answer"),
        ("user", "second"),
    ]
    assert snapshot["run"]["content"] == "second "
    await reloaded.stop()
    complete = await reloaded.wait_for("complete")
    assert complete["reason"] == "stopped"


async def test_a_wrong_token_gets_nothing_and_leaves_the_reader_attached() -> None:
    model = ScriptedModel([["a", Hang()]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("go")
    await client.wait_for("token")
    intruder = MemoryClient(runtime)
    with pytest.raises(ResumeDenied):
        intruder.resume(0, token="not the token")
    assert intruder.headers == [] and await intruder.pump() == []
    await client.stop()
    assert (await client.wait_for("complete"))["reason"] == "stopped"
