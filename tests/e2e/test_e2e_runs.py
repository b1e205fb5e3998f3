"""Runs end to end: real uvicorn on a loopback port, the Python client, a scripted model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import websockets

from bridge import ServerTools
from bridge.calls import TerminalStatus
from bridge.conversation import Conversation, ToolResult, Turn
from bridge.testing import Hang, ScriptedModel, call
from bridge_client import BridgeClient, ToolContext, ToolDenied
from tests.conftest import StartBridge
from tests.e2e.support import Watch, runtime_of

BOUND_S = 10


def results(turns: list[Turn]) -> dict[str, TerminalStatus]:
    return {t.name + ":" + t.call_id: t.status for t in turns if isinstance(t, ToolResult)}


def assert_settled(turns: list[Turn]) -> None:
    assert Conversation(list(turns)).unanswered_calls() == []


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_tool_round_trip_resumes_streaming(start_bridge: StartBridge) -> None:
    model = ScriptedModel([["Checking", " now. ", call("echo", {"text": "hi"})], ["Done: ", "hi"]])
    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("round-trip"))

        @client.tool
        def echo(text: str) -> dict[str, str]:
            """Echo the text back."""
            return {"echo": text}

        async with asyncio.timeout(BOUND_S), client:
            assert client.ready["tools"]["accepted"] == ["echo"]
            result = await client.run("say hi")
    assert kinds(result.events) == [
        "run_started",
        "token",
        "token",
        "tool_request",
        "tool_result",
        "token",
        "token",
        "complete",
    ]
    request = result.events[3]
    assert request["name"] == "echo" and request["arguments"] == {"text": "hi"}
    assert request["timeout_ms"] == 30_000
    assert result.events[4]["id"] == request["id"] and result.events[4]["status"] == "ok"
    assert result.text == "Checking now. Done: hi" and result.reason == "done"
    seqs = [e["seq"] for e in result.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    follow_up = model.requests[1]
    assert isinstance(follow_up[-1], ToolResult) and follow_up[-1].data == {"echo": "hi"}


async def test_calls_of_one_step_run_concurrently(start_bridge: StartBridge) -> None:
    model = ScriptedModel([[call("meet", {"who": "a"}), call("meet", {"who": "b"})], ["both met"]])
    arrived: list[str] = []
    both_here = asyncio.Event()

    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("concurrent"))

        @client.tool
        async def meet(who: str) -> str:
            """Wait until the other call is running too."""
            arrived.append(who)
            if len(arrived) == 2:
                both_here.set()
            # Sequential dispatch would never get the second call here: each waits for the other.
            async with asyncio.timeout(5):
                await both_here.wait()
            return f"{who} met"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("meet")
    statuses = [e["status"] for e in result.events if e["type"] == "tool_result"]
    assert statuses == ["ok", "ok"] and sorted(arrived) == ["a", "b"]
    last = model.requests[-1]
    assert [t.data for t in last if isinstance(t, ToolResult)] == ["a met", "b met"]


async def test_invalid_arguments_go_to_the_model_and_never_to_the_client(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel(
        [
            [call("echo", {"text": 5}), call("echo", "{not json")],
            [call("echo", {"text": "fixed"})],
            ["ok"],
        ]
    )
    handled: list[str] = []
    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("invalid-args"))

        @client.tool
        def echo(text: str) -> str:
            handled.append(text)
            return text

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("go")
    requests = [e for e in result.events if e["type"] == "tool_request"]
    assert [r["arguments"] for r in requests] == [{"text": "fixed"}]
    assert handled == ["fixed"]
    corrected = [t for t in model.requests[1] if isinstance(t, ToolResult)]
    assert [t.status for t in corrected] == [TerminalStatus.INVALID_ARGUMENTS] * 2
    assert "not of type 'string'" in corrected[0].content
    assert "not valid JSON" in corrected[1].content
    assert [e["status"] for e in result.events if e["type"] == "tool_result"] == [
        "invalid_arguments",
        "invalid_arguments",
        "ok",
    ]


async def test_timed_out_call_reaches_the_model_and_a_late_answer_is_dropped(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([[call("slow")], ["gave up"]])
    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("timeout"))
        release = asyncio.Event()

        @client.tool(timeout_ms=150)
        async def slow() -> str:
            await release.wait()
            return "too late"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("go")
            request = next(e for e in result.events if e["type"] == "tool_request")
            cancel = next(e for e in result.events if e["type"] == "tool_cancel")
            assert cancel == {**cancel, "id": request["id"], "reason": "timed_out"}
            # The late answer is dropped quietly: the next thing back is the pong, no error.
            await client.send_json(
                {"type": "tool_response", "id": request["id"], "status": "ok", "result": "late"}
            )
            await client.send_json({"type": "ping", "nonce": "after-late"})
            assert await client.next_event() == {
                **_pong("after-late"),
                "seq": result.events[-1]["seq"] + 1,
            }
    timed_out = [t for t in model.requests[1] if isinstance(t, ToolResult)]
    assert [t.status for t in timed_out] == [TerminalStatus.TIMED_OUT]
    assert result.reason == "done"


def _pong(nonce: str) -> dict[str, Any]:
    return {"type": "pong", "nonce": nonce}


async def test_progress_keeps_a_slow_call_alive_and_the_hard_cap_ends_it(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([[call("patient"), call("endless")], ["over"]])
    async with start_bridge(model=model, progress_cap_ms=1200) as server:
        client = BridgeClient(server.ws_url("progress"))

        @client.tool(timeout_ms=300)
        async def patient(ctx: ToolContext) -> str:
            """Works for 750 ms, more than twice its timeout, reporting progress."""
            for step in range(5):
                await asyncio.sleep(0.15)
                await ctx.progress(progress=step / 5, message="working")
            return "finished"

        @client.tool(timeout_ms=300)
        async def endless(ctx: ToolContext) -> str:
            """Reports progress for ever; only the hard cap stops it."""
            while True:
                await asyncio.sleep(0.15)
                await ctx.progress(message="still going")

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("go")
    outcome = {e["name"]: e["status"] for e in result.events if e["type"] == "tool_result"}
    assert outcome == {"patient": "ok", "endless": "timed_out"}


async def test_stop_mid_stream_cancels_the_model_stream(start_bridge: StartBridge) -> None:
    model = ScriptedModel([["Hel", "lo", call("echo", {"text": "x"}), Hang()], ["next run"]])
    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("stop-stream"))

        @client.tool
        def echo(text: str) -> str:
            return text

        async with asyncio.timeout(BOUND_S), client:
            await client.send("talk")
            await client.wait_for("token")
            await client.wait_for("token")
            await client.stop()
            complete = await client.wait_for("complete")
            assert complete["reason"] == "stopped"
            assert model.cancelled == 1
            after = await client.run("again")
    assert after.reason == "done"
    last = model.requests[-1]
    assert_settled(last)
    assert list(results(last).values()) == [TerminalStatus.CANCELLED]


async def test_stop_mid_tool_call_cancels_the_call(start_bridge: StartBridge) -> None:
    model = ScriptedModel([[call("wait_forever"), call("quick")], ["next run"]])
    handler_cancelled = asyncio.Event()
    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("stop-call"))

        @client.tool
        async def wait_forever() -> None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                handler_cancelled.set()
                raise

        @client.tool
        def quick() -> str:
            return "quick"

        async with asyncio.timeout(BOUND_S), client:
            await client.send("go")
            request = await client.wait_for("tool_request")
            events = [request]
            while not (
                sum(e["type"] == "tool_request" for e in events) == 2
                and any(e["type"] == "tool_result" for e in events)
            ):
                events.append(await client.next_event())
            await client.stop()
            while events[-1]["type"] != "complete":
                events.append(await client.next_event())
            await handler_cancelled.wait()
            after = await client.run("again")
    tail = kinds(events)
    assert tail.index("tool_cancel") < tail.index("complete")
    assert events[-1]["reason"] == "stopped"
    cancel = next(e for e in events if e["type"] == "tool_cancel")
    waiting = next(e for e in events if e.get("name") == "wait_forever")
    assert cancel["id"] == waiting["id"] and cancel["reason"] == "stopped"
    last = model.requests[-1]
    assert_settled(last)
    assert sorted(s.value for s in results(last).values()) == ["cancelled", "ok"]
    assert after.reason == "done"


async def test_server_tool_and_client_tool_in_one_run(start_bridge: StartBridge) -> None:
    tools = ServerTools()

    @tools.tool
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    model = ScriptedModel(
        [[call("add", {"a": 2, "b": 3}), call("shout", {"text": "hi"})], ["5 HI"]]
    )
    async with start_bridge(model=model, server_tools=tools) as server:
        client = BridgeClient(server.ws_url("mixed"))

        @client.tool
        def shout(text: str) -> str:
            return text.upper()

        async with asyncio.timeout(BOUND_S), client:
            assert client.ready["server_tools"] == ["add"]
            result = await client.run("go")
    by_name = {e["name"]: e for e in result.events if e["type"] == "tool_result"}
    assert by_name["add"]["source"] == "server" and by_name["add"]["result"] == 5
    assert by_name["shout"]["source"] == "client" and by_name["shout"]["result"] == "HI"
    assert [e["name"] for e in result.events if e["type"] == "tool_request"] == ["shout"]
    assert model.tools_seen[0] == ["add", "shout"]


async def test_errors_denials_and_bad_results_are_terminal_results(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([[call("broken"), call("refuse"), call("shape"), call("ghost")], ["ok"]])
    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("statuses"))

        @client.tool
        def broken() -> None:
            raise ValueError("disk on fire")

        @client.tool(interactive=True)
        def refuse() -> None:
            raise ToolDenied("user said no")

        @client.tool(output_schema={"type": "object", "required": ["n"]})
        def shape() -> dict[str, int]:
            return {"m": 1}

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("go")
    outcome = {e["name"]: e for e in result.events if e["type"] == "tool_result"}
    assert outcome["broken"]["status"] == "error" and "disk on fire" in outcome["broken"]["error"]
    assert outcome["refuse"]["status"] == "denied"
    assert outcome["shape"]["status"] == "error" and "output_schema" in outcome["shape"]["error"]
    assert outcome["ghost"]["status"] == "error" and "no tool named" in outcome["ghost"]["error"]
    interactive = next(e for e in result.events if e.get("name") == "refuse")
    assert interactive["interactive"] is True and interactive["timeout_ms"] == 600_000


async def test_max_steps_ends_the_run_and_settles_the_last_calls(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([[call("again")], [call("again")], [call("again")], ["after"]])
    async with start_bridge(model=model, max_steps=2) as server:
        client = BridgeClient(server.ws_url("max-steps"))
        count = 0

        @client.tool
        def again() -> int:
            nonlocal count
            count += 1
            return count

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("loop")
            assert count == 1
            await client.run("next")
    assert result.reason == "max_steps" and result.events[-1]["steps"] == 2
    assert_settled(model.requests[-1])
    statuses = list(results(model.requests[-1]).values())
    assert statuses == [TerminalStatus.OK, TerminalStatus.CANCELLED, TerminalStatus.OK]


async def test_a_message_during_a_run_is_queued(start_bridge: StartBridge) -> None:
    release = asyncio.Event()
    model = ScriptedModel([["first ", Hang(release)], ["second"]])
    async with start_bridge(model=model) as server:
        async with asyncio.timeout(BOUND_S), BridgeClient(server.ws_url("queue")) as client:
            await client.send("one")
            events = [await client.wait_for("token")]
            await client.send("two")
            release.set()
            while sum(e["type"] == "complete" for e in events) < 2:
                events.append(await client.next_event())
    started = [e for e in events if e["type"] == "run_started"]
    assert [e["content"] for e in started] == ["two"]
    completes = [e for e in events if e["type"] == "complete"]
    assert [c["reason"] for c in completes] == ["done", "done"]
    assert completes[1]["run_id"] == started[0]["run_id"] != completes[0]["run_id"]
    tokens = [e["content"] for e in events if e["type"] == "token"]
    assert tokens == ["first ", "second"]
    assert kinds(events).index("run_started") > kinds(events).index("complete")


async def test_after_the_grace_pending_calls_are_cancelled_and_the_session_lives_on(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([[call("wait")], ["resumed"]])
    async with start_bridge(model=model, resume_grace_s=0.05) as server:
        url = server.ws_url("reconnect")
        first = BridgeClient(url)

        @first.tool
        async def wait() -> None:
            await asyncio.Event().wait()

        async with asyncio.timeout(BOUND_S):
            async with first:
                await first.send("go")
                await first.wait_for("tool_request")
                watch = Watch(runtime_of(server, "reconnect"))
            await watch.completed.wait()
            # Back after the grace, with the session's token: the conversation is still there.
            resume = {"token": first.resume_token, "last_seq": first.last_seq}
            async with websockets.connect(url) as second:
                await second.send(json.dumps({"type": "hello", "protocol": 1, "resume": resume}))
                frames = [json.loads(await second.recv())]
                await second.send(json.dumps({"type": "message", "content": "again"}))
                while frames[-1]["type"] != "complete" or frames[-1]["reason"] != "done":
                    frames.append(json.loads(await second.recv()))
    assert frames[0]["type"] == "ready"
    disconnected = [f for f in frames if f["type"] == "complete" and f["reason"] == "disconnected"]
    assert len(disconnected) == 1, "the first run ended when the grace did"
    assert "".join(f["content"] for f in frames if f["type"] == "token") == "resumed"
    assert_settled(model.requests[-1])
    assert list(results(model.requests[-1]).values()) == [TerminalStatus.CANCELLED]
