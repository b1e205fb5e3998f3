"""A run carried on by another runtime from the session's record: what a worker does when it
takes a session over, after the one that ran it handed it over or died."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.agent.runtime import SessionRuntime
from bridge.agent.server_tools import ServerTools
from bridge.limits import ConnectionLimits, SessionLimits, wire_limits
from bridge.session import Session
from bridge.testing import Hang, MemoryClient, ScriptedModel, call
from tests.agent.support import assert_each_call_settled_once, of_type, tool

BOUND_S = 5


class Records:
    """Stands in for a shared store: the last record each runtime stored."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] | None = None
        self.puts = 0

    async def put(self, session: Session) -> None:
        self.latest = session.dump()
        self.puts += 1


def runtime(
    model: ScriptedModel, records: Records, record: dict[str, Any] | None = None
) -> SessionRuntime:
    limits = SessionLimits()
    session = (
        Session("moving", clock=lambda: 1_000.0, limits=limits)
        if record is None
        else Session.load(record, clock=lambda: 1_000.0, limits=limits)
    )
    return SessionRuntime(
        session,
        model,
        limits=wire_limits(limits, ConnectionLimits()),
        queue_size=256,
        store=records.put,
    )


async def test_a_pending_call_is_answered_on_the_runtime_that_took_the_session_over() -> None:
    model = ScriptedModel([["Let me look. ", call("lookup", {"q": "x"})], ["Found it."]])
    records = Records()
    first = runtime(model, records)
    ran: list[str] = []
    client = MemoryClient(first)
    client.hello([tool("lookup")])
    await client.say("go")
    request = await client.wait_for("tool_request")
    await first.hand_over()
    await first.checkpoint()  # as the worker handing over does
    assert records.latest is not None and records.latest["calls"]["pending"]
    # The first runtime sent no cancel and no complete: the run is not over.
    assert of_type(client.frames, "tool_cancel") == [] and of_type(client.frames, "complete") == []

    second = runtime(model, records, records.latest)
    second.take_over()
    client2 = MemoryClient(second, handlers={"lookup": lambda a: ran.append(a["q"]) or "x found"})
    ready, snapshot = client2.resume(client.last_seq)
    assert ready["resumed"]["pending_calls"] == [request["id"]] and snapshot is None
    redelivered = await client2.wait_for("tool_request")
    assert redelivered["id"] == request["id"] and redelivered["redelivered"] is True
    complete = await client2.wait_for("complete")
    assert complete["reason"] == "done" and ran == ["x"]
    text = "".join(f["content"] for f in of_type(client2.frames, "token"))
    assert text == "Found it."
    assert_each_call_settled_once(second, client2)
    # The second step saw the first one's call with exactly one result.
    assert [t.call_id for t in model.requests[-1] if hasattr(t, "call_id")] == ["scripted_1"]


async def test_a_step_being_streamed_is_made_again_after_a_step_retry() -> None:
    release = asyncio.Event()
    model = ScriptedModel([["Half an ", Hang(release)], ["A whole answer."]])
    records = Records()
    first = runtime(model, records)
    client = MemoryClient(first)
    client.hello()
    await client.say("go")
    await client.wait_for("token")
    await first.checkpoint()
    await first.hand_over()
    assert model.cancelled == 1

    second = runtime(model, records, records.latest)
    second.take_over()
    client2 = MemoryClient(second)
    client2.resume(client.last_seq)
    retry = await client2.wait_for("step_retry")
    complete = await client2.wait_for("complete")
    assert retry["reason"] == "owner_changed" and retry["step"] == 1
    tokens = [f for f in client2.frames if f["type"] == "token" and f["seq"] > retry["seq"]]
    assert "".join(f["content"] for f in tokens) == "A whole answer."
    assert complete["reason"] == "done" and complete["steps"] == 1
    assert len(model.requests) == 2 and len(model.requests[1]) == 1  # the user's message alone


async def test_a_call_is_stored_as_pending_before_its_request_is_sent() -> None:
    model = ScriptedModel([[call("lookup", {"q": "x"})], ["ok"]])
    records = Records()
    first = runtime(model, records)
    client = MemoryClient(first)
    client.hello([tool("lookup")])
    await client.say("go")
    request = await client.wait_for("tool_request")
    assert records.latest is not None
    stored = [c["id"] for c in records.latest["calls"]["pending"]]
    assert stored == [request["id"]]


async def test_an_answer_accepted_just_before_the_hand_over_is_not_lost() -> None:
    # The client's answer is accepted (the call is finished in the table) and the session is
    # handed over before the run took the result in: the record must carry the answer, or
    # the next runtime would wait for a call nobody will answer again.
    model = ScriptedModel([["Let me look. ", call("lookup", {"q": "x"})], ["Found it."]])
    records = Records()
    first = runtime(model, records)
    client = MemoryClient(first)
    client.hello([tool("lookup")])
    await client.say("go")
    request = await client.wait_for("tool_request")
    await client.answer(request["id"], "x found")  # accepted; the run has not run since
    await first.hand_over()
    await first.checkpoint()
    assert records.latest is not None
    assert records.latest["calls"]["answers"] == {request["id"]: ["ok", "x found", None]}

    second = runtime(model, records, records.latest)
    second.take_over()
    ran: list[str] = []
    client2 = MemoryClient(second, handlers={"lookup": lambda a: ran.append(a["q"]) or "again"})
    ready, _ = client2.resume(client.last_seq, tools=[tool("lookup")])
    # Answered already: not pending, not asked again, and the handler does not run twice.
    assert ready["resumed"]["pending_calls"] == []
    async with asyncio.timeout(BOUND_S):
        complete = await client2.wait_for("complete")
    assert complete["reason"] == "done" and ran == []
    results = [f for f in client2.frames if f["type"] == "tool_result"]
    assert [(r["id"], r["status"], r["result"]) for r in results] == [
        (request["id"], "ok", "x found")
    ]
    assert second.session.calls.answer_of(request["id"]) is None
    assert_each_call_settled_once(second, client2)


async def test_an_answer_that_arrives_before_the_taken_over_run_asks_for_it_is_used() -> None:
    # The client re-sends its kept result right after its hello, ahead of the run that was
    # just taken over reaching the call again.
    model = ScriptedModel([["Let me look. ", call("lookup", {"q": "x"})], ["Found it."]])
    records = Records()
    first = runtime(model, records)
    client = MemoryClient(first)
    client.hello([tool("lookup")])
    await client.say("go")
    request = await client.wait_for("tool_request")
    await first.hand_over()
    await first.checkpoint()

    assert records.latest is not None
    second = runtime(model, records, records.latest)
    client2 = MemoryClient(second, handlers={})
    client2.resume(client.last_seq, tools=[tool("lookup")])
    await client2.answer(request["id"], "x found")  # before the run is even launched
    second.take_over()
    async with asyncio.timeout(BOUND_S):
        complete = await client2.wait_for("complete")
    assert complete["reason"] == "done"
    results = [f for f in client2.frames if f["type"] == "tool_result"]
    assert [(r["id"], r["result"]) for r in results] == [(request["id"], "x found")]
    assert_each_call_settled_once(second, client2)


async def test_a_server_tool_is_not_run_when_the_write_before_it_finds_the_session_taken() -> None:
    """The write that records a server tool as started is the last chance to learn that
    another worker holds the session (it runs the call from its record): the tool must not
    run here as well."""
    tools = ServerTools()
    ran: list[int] = []

    @tools.tool
    async def crunch(n: int) -> int:
        """Crunch a number."""
        ran.append(n)
        return n

    model = ScriptedModel([[call("crunch", {"n": 1})], ["crunched"]])
    limits = SessionLimits()
    session = Session("taken", clock=lambda: 1_000.0, limits=limits, server_tools=tools.specs)
    writes: list[set[str]] = []
    stopped = asyncio.Event()
    taken_runtime: list[SessionRuntime] = []

    async def store(stored: Session) -> None:
        run = stored.run
        writes.append(set() if run is None else set(run.started))
        if run is not None and run.started:
            # What the hub does when a write answers "not owner".
            taken_runtime[0].stop_for_move()
            stopped.set()

    taken = SessionRuntime(
        session,
        model,
        limits=wire_limits(limits, ConnectionLimits()),
        queue_size=256,
        server_tools=tools,
        store=store,
    )
    taken_runtime.append(taken)
    client = MemoryClient(taken)
    client.hello([])
    await client.say("go")
    async with asyncio.timeout(BOUND_S):
        await stopped.wait()
        await taken.hand_over()
    assert ran == []
    assert of_type(client.frames, "tool_result") == [] and of_type(client.frames, "complete") == []
    # The call stays started in the record, for the worker that has the session to settle.
    assert session.run is not None and session.run.started
