"""Every way a run can end, driven in memory: one terminal result per call, one `complete`."""

from __future__ import annotations

import asyncio

from bridge.agent.server_tools import ServerTools
from bridge.conversation import AssistantTurn, ToolResult
from bridge.errors import ErrorCode
from bridge.limits import SessionLimits
from bridge.models.base import ModelError
from bridge.testing import Hang, MemoryClient, ScriptedModel, call, memory_runtime
from tests.agent.support import (
    BOUND_S,
    Gate,
    StepModel,
    assert_each_call_settled_once,
    assert_seqs_consecutive,
    kinds,
    of_type,
    tool,
)


async def test_done_path_answers_each_call_and_completes_once() -> None:
    model = ScriptedModel([["Checking. ", call("echo", {"text": "hi"})], ["Done: ", "hi"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime, handlers={"echo": lambda args: {"echo": args["text"]}})
    ready = client.hello([tool("echo")])
    assert ready["tools"]["accepted"] == ["echo"] and ready["resume_token"]
    await client.say("say hi")
    complete = await client.wait_for("complete")
    assert kinds(client.frames) == [
        "run_started",
        "token",
        "tool_request",
        "tool_result",
        "token",
        "token",
        "complete",
    ]
    assert_seqs_consecutive(client.frames)
    assert complete["reason"] == "done" and complete["steps"] == 2
    request, result = client.frames[2], client.frames[3]
    assert result["id"] == request["id"] and result["status"] == "ok"
    assert result["result"] == {"echo": "hi"} and result["source"] == "client"
    follow_up = model.requests[1][-1]
    assert isinstance(follow_up, ToolResult) and follow_up.data == {"echo": "hi"}
    assert client.handled == {request["id"]: 1}
    assert_each_call_settled_once(runtime, client)
    assert not runtime.session.running


async def test_max_steps_settles_the_last_steps_calls_without_running_them() -> None:
    model = ScriptedModel([[call("echo")], [call("echo"), call("echo")], ["never"]])
    runtime = memory_runtime(model, limits=SessionLimits(max_steps=2))
    client = MemoryClient(runtime, handlers={"echo": lambda args: "ok"})
    client.hello([tool("echo")])
    await client.say("loop")
    complete = await client.wait_for("complete")
    assert complete["reason"] == "max_steps" and complete["steps"] == 2
    assert len(of_type(client.frames, "tool_request")) == 1  # the second step's calls never ran
    statuses = [f["status"] for f in of_type(client.frames, "tool_result")]
    assert statuses == ["ok", "cancelled", "cancelled"]
    assert len(model.requests) == 2
    assert_each_call_settled_once(runtime, client)


async def test_a_model_error_ends_the_run_with_error_and_settles_its_calls() -> None:
    failure = ModelError("the provider said no", code=ErrorCode.MODEL_BAD_REQUEST)
    model = StepModel([[call("echo")], ["partial ", call("echo"), failure]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime, handlers={"echo": lambda args: "ok"})
    client.hello([tool("echo")])
    await client.say("go")
    complete = await client.wait_for("complete")
    assert complete["reason"] == "error"
    errors = of_type(client.frames, "error")
    assert [(e["code"], e["run_id"]) for e in errors] == [("model_bad_request", complete["run_id"])]
    assert kinds(client.frames).index("error") < kinds(client.frames).index("complete")
    assert_each_call_settled_once(runtime, client)
    # The session lives on: the next message starts a new run.
    await client.say("again")
    assert (await client.wait_for("complete"))["reason"] == "done"
    assert len(of_type(client.frames, "complete")) == 2


async def test_a_crash_inside_the_bridge_ends_the_run_with_internal_error() -> None:
    model = StepModel([[call("echo"), RuntimeError("bug")]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("echo")])
    await client.say("go")
    complete = await client.wait_for("complete")
    assert complete["reason"] == "error"
    assert [e["code"] for e in of_type(client.frames, "error")] == ["internal_error"]
    assert_each_call_settled_once(runtime, client)


async def test_a_broken_step_is_made_again_and_its_calls_never_reach_a_tool() -> None:
    broken = ModelError("cut", code=ErrorCode.MODEL_CONNECTION, broken_stream=True)
    model = StepModel([["half ", call("echo", {"n": 1}), broken], ["whole ", call("echo")], ["ok"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime, handlers={"echo": lambda args: args})
    client.hello([tool("echo")])
    await client.say("go")
    complete = await client.wait_for("complete")
    assert complete["reason"] == "done"
    assert kinds(client.frames)[:4] == ["run_started", "token", "step_retry", "token"]
    requests = of_type(client.frames, "tool_request")
    assert [r["arguments"] for r in requests] == [{}]
    assert_each_call_settled_once(runtime, client)


async def test_stop_mid_tool_cancels_the_call_then_completes_stopped() -> None:
    model = ScriptedModel([[call("slow")], ["never"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)  # no handler: the call stays pending
    client.hello([tool("slow")])
    await client.say("go")
    request = await client.wait_for("tool_request")
    await client.stop()
    complete = await client.wait_for("complete")
    tail = [(f["type"], f.get("id"), f.get("reason") or f.get("status")) for f in client.frames[2:]]
    assert tail == [
        ("tool_cancel", request["id"], "stopped"),
        ("tool_result", request["id"], "cancelled"),
        ("complete", None, "stopped"),
    ]
    assert complete["steps"] == 1 and len(model.requests) == 1
    # The answer arrives too late: dropped, no error, no second result.
    await client.answer(request["id"], "late")
    await client.pump()
    assert of_type(client.frames, "error") == []
    assert_each_call_settled_once(runtime, client)


async def test_stop_with_parallel_calls_cancels_each_once() -> None:
    model = ScriptedModel([[call("slow", {"n": 1}), call("slow", {"n": 2})]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("slow")])
    await client.say("go")
    await client.wait_for(lambda f: len(of_type(client.frames, "tool_request")) == 2)
    await client.stop()
    await client.wait_for("complete")
    cancels = of_type(client.frames, "tool_cancel")
    assert sorted(c["id"] for c in cancels) == sorted(
        r["id"] for r in of_type(client.frames, "tool_request")
    )
    assert_each_call_settled_once(runtime, client)
    assert len(of_type(client.frames, "complete")) == 1


async def test_stop_while_the_model_streams() -> None:
    model = ScriptedModel([["thinking", Hang()]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("go")
    await client.wait_for("token")
    await client.stop()
    complete = await client.wait_for("complete")
    assert complete["reason"] == "stopped" and model.cancelled == 1
    last = runtime.session.conversation.turns[-1]
    assert isinstance(last, AssistantTurn) and last.content == "thinking"


async def test_stop_before_the_first_step_still_completes_once() -> None:
    model = ScriptedModel([["never"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello()
    # Both in one go: the run's task is cancelled before it ever ran.
    await client.say("go")
    await client.stop()
    complete = await client.wait_for("complete")
    assert (complete["reason"], complete["steps"]) == ("stopped", 0)
    assert model.requests == []
    await client.settle()
    assert kinds(client.frames) == ["run_started", "complete"]


async def test_stop_drops_queued_messages_and_a_second_stop_is_refused() -> None:
    model = ScriptedModel([["a", Hang()], ["b"], ["c"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("one")
    await client.say("two")
    await client.say("three")
    await client.wait_for("token")
    await client.stop()
    await client.wait_for("complete")
    await client.stop()
    error = await client.wait_for("error")
    assert error["code"] == "no_active_run"
    await client.settle()
    assert len(of_type(client.frames, "complete")) == 1
    assert len(of_type(client.frames, "run_started")) == 1


async def test_queued_messages_each_get_their_own_run_and_complete() -> None:
    model = ScriptedModel([["a"], ["b"], ["c"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello()
    for text in ("one", "two", "three"):
        await client.say(text)
    await client.settle()
    completes = of_type(client.frames, "complete")
    starts = of_type(client.frames, "run_started")
    assert [s["content"] for s in starts] == ["one", "two", "three"]
    assert [c["run_id"] for c in completes] == [s["run_id"] for s in starts]
    assert len({c["run_id"] for c in completes}) == 3
    assert all(c["reason"] == "done" for c in completes)


async def test_end_while_a_call_is_pending_completes_disconnected() -> None:
    model = ScriptedModel([[call("slow")], ["never"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("slow")])
    await client.say("go")
    request = await client.wait_for("tool_request")
    async with asyncio.timeout(BOUND_S):
        await runtime.end("disconnected")
    complete = await client.wait_for("complete")
    assert complete["reason"] == "disconnected"
    cancel = of_type(client.frames, "tool_cancel")
    assert [(c["id"], c["reason"]) for c in cancel] == [(request["id"], "disconnected")]
    assert_each_call_settled_once(runtime, client)


async def test_end_of_a_held_session_settles_everything_with_nobody_reading() -> None:
    model = ScriptedModel([[call("slow"), call("slow")], ["never"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("slow")])
    await client.say("go")
    await client.wait_for(lambda f: len(of_type(client.frames, "tool_request")) == 2)
    client.detach()
    async with asyncio.timeout(BOUND_S):
        await runtime.end("disconnected")
    assert not runtime.session.running
    # What the session recorded is what a returning client reads.
    client.resume()
    await client.settle()
    assert [c["reason"] for c in of_type(client.frames, "complete")] == ["disconnected"]
    assert_each_call_settled_once(runtime, client)


async def test_end_with_no_run_sends_nothing() -> None:
    runtime = memory_runtime(ScriptedModel([]))
    client = MemoryClient(runtime)
    client.hello()
    async with asyncio.timeout(BOUND_S):
        await runtime.end("disconnected")
    assert await client.pump() == []


async def test_parallel_calls_run_together_and_results_keep_call_order() -> None:
    model = ScriptedModel([[call("t", {"n": 1}), call("t", {"n": 2})], ["both"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("t")])
    await client.say("go")
    await client.wait_for(lambda f: len(of_type(client.frames, "tool_request")) == 2)
    first, second = of_type(client.frames, "tool_request")
    # Answered in reverse: the second result is announced first, the model sees call order.
    await client.answer(second["id"], "two")
    await client.answer(first["id"], "one")
    await client.wait_for("complete")
    announced = [f["id"] for f in of_type(client.frames, "tool_result")]
    assert announced == [second["id"], first["id"]]
    results = [t for t in model.requests[1] if isinstance(t, ToolResult)]
    assert [r.data for r in results] == ["one", "two"]
    # A second answer to an answered call is a duplicate, said so.
    await client.answer(first["id"], "again")
    error = await client.wait_for("error")
    assert (error["code"], error["id"]) == ("duplicate_response", first["id"])
    assert_each_call_settled_once(runtime, client)


async def test_a_call_times_out_with_cancel_before_result_and_late_answers_are_dropped() -> None:
    model = ScriptedModel([[call("quick"), call("slow")], ["after"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("quick", timeout_ms=30), tool("slow", timeout_ms=60_000)])
    await client.say("go")
    await client.wait_for(lambda f: f["type"] == "tool_result")
    quick, slow = of_type(client.frames, "tool_request")
    assert quick["timeout_ms"] == 30
    order = [(f["type"], f.get("id")) for f in client.frames if f.get("id") == quick["id"]]
    assert order == [
        ("tool_request", quick["id"]),
        ("tool_cancel", quick["id"]),
        ("tool_result", quick["id"]),
    ]
    assert of_type(client.frames, "tool_cancel")[0]["reason"] == "timed_out"
    assert of_type(client.frames, "tool_result")[0]["status"] == "timed_out"
    await client.answer(quick["id"], "late")  # dropped: no error, no second result
    await client.answer(slow["id"], "in time")
    await client.wait_for("complete")
    assert of_type(client.frames, "error") == []
    assert [r["status"] for r in of_type(client.frames, "tool_result")] == ["timed_out", "ok"]
    assert_each_call_settled_once(runtime, client)


async def test_unknown_tool_and_invalid_arguments_are_settled_without_a_request() -> None:
    model = ScriptedModel([[call("missing"), call("typed", "{broken")], ["ok"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello([tool("typed")])
    await client.say("go")
    await client.wait_for("complete")
    assert of_type(client.frames, "tool_request") == []
    statuses = [r["status"] for r in of_type(client.frames, "tool_result")]
    assert statuses == ["error", "invalid_arguments"]
    assert_each_call_settled_once(runtime, client)


async def test_server_tools_run_in_process_and_are_announced_as_server() -> None:
    server_tools = ServerTools()

    @server_tools.tool
    def add(a: int, b: int) -> int:
        return a + b

    model = ScriptedModel([[call("add", {"a": 2, "b": 3})], ["5"]])
    runtime = memory_runtime(model, server_tools=server_tools)
    client = MemoryClient(runtime)
    assert client.hello()["server_tools"] == ["add"]
    await client.say("add")
    await client.wait_for("complete")
    (result,) = of_type(client.frames, "tool_result")
    assert (result["source"], result["result"]) == ("server", 5)
    assert_each_call_settled_once(runtime, client)


async def test_a_failing_handler_is_the_tools_error() -> None:
    def explode(args: dict[str, object]) -> object:
        raise ValueError("no such record")

    model = ScriptedModel([[call("boom")], ["sorry"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime, handlers={"boom": explode})
    client.hello([tool("boom")])
    await client.say("go")
    await client.wait_for("complete")
    (result,) = of_type(client.frames, "tool_result")
    assert result["status"] == "error" and "no such record" in result["error"]
    assert_each_call_settled_once(runtime, client)


async def test_a_gated_model_can_be_stopped_at_the_gate() -> None:
    gate = Gate()
    model = StepModel([["a", gate, "b"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("go")
    async with asyncio.timeout(BOUND_S):
        await gate.reached.wait()
    await client.stop()
    complete = await client.wait_for("complete")
    assert complete["reason"] == "stopped"
    assert [t["content"] for t in of_type(client.frames, "token")] == ["a"]
