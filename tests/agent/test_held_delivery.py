"""Delivery to a client that comes back: detaching by a bound method, a held run filling the
window, `from_seq` after a gap, and a burst of control messages while the session is held."""

from __future__ import annotations

from bridge.agent.outbox import Outbox
from bridge.agent.server_tools import ServerTools
from bridge.limits import SessionLimits
from bridge.outbound import OutboundLog
from bridge.protocol import UserMessage
from bridge.testing import MemoryClient, ScriptedModel, call, memory_runtime
from tests.agent.support import StepModel, tool, until


class Reader:
    """Stands in for a connection: `notify` is a method, as on the server."""

    def __init__(self) -> None:
        self.woken = 0

    def notify(self) -> None:
        self.woken += 1


async def test_detach_with_a_bound_method_detaches() -> None:
    # Each access to `reader.notify` makes a new bound-method object.
    outbox = Outbox(OutboundLog(max_messages=10, max_bytes=10_000), queue_size=4)
    reader = Reader()
    outbox.attach(None, reader.notify)
    outbox.detach(reader.notify)
    assert outbox.log.cursor is None


async def test_a_held_run_streams_into_the_window_not_only_up_to_the_send_queue() -> None:
    model = StepModel([[f"t{n} " for n in range(40)]])  # type: ignore[arg-type]
    runtime = memory_runtime(model, queue_size=4)
    reader = Reader()
    runtime.greet([], reader.notify)
    await runtime.handle(UserMessage(content="go"))
    runtime.outbox.detach(reader.notify)
    await until(lambda: not runtime.session.running)


async def test_from_seq_after_a_gap_is_the_first_seq_sent() -> None:
    model = ScriptedModel([["one ", "two ", call("confirm")], ["yes"]])
    runtime = memory_runtime(model, limits=SessionLimits(replay_max_messages=2))
    client = MemoryClient(runtime)
    client.hello([tool("confirm")])
    await client.say("go")
    await client.wait_for("tool_request")
    client.detach()
    ready, snapshot = client.resume(1)
    assert snapshot is not None
    request = await client.wait_for("tool_request")
    assert request["redelivered"] is True
    assert ready["resumed"]["from_seq"] == request["seq"] == snapshot["last_seq"] + 1


async def test_a_burst_of_results_while_held_keeps_what_the_client_has_not_read() -> None:
    # Control messages never wait; while the session is held they may pass the window's
    # bound, but never push out a frame the departed client has not read.
    server_tools = ServerTools()

    @server_tools.tool
    def note() -> str:
        return "noted"

    model = ScriptedModel([[call("note"), call("note"), call("note"), call("note")], ["end"]])
    limits = SessionLimits(replay_max_messages=3)
    runtime = memory_runtime(model, limits=limits, server_tools=server_tools)
    client = MemoryClient(runtime)
    client.hello()
    await client.say("go")
    await client.wait_for("run_started")
    client.detach()
    await until(lambda: len(model.requests) >= 2)
    ready, _snapshot = client.resume(1)
    assert ready["resumed"]["gap"] is False, "frames the client never read were dropped"
