"""Session state: tools, runs, queue, sequence numbers. No event loop."""

from __future__ import annotations

import pytest

from bridge.agent.server_tools import ServerTools
from bridge.calls import TerminalStatus
from bridge.conversation import AssistantTurn, Conversation, ToolCall, ToolResult, UserTurn
from bridge.errors import ErrorCode, ProtocolError
from bridge.limits import SessionLimits, ToolLimits
from bridge.protocol import ServerPongMessage
from bridge.session import Session


def tool(name: str) -> dict[str, object]:
    return {"name": name, "parameters": {"type": "object"}}


def make(max_tools: int = 4, max_queued: int = 2) -> Session:
    server = ServerTools()

    @server.tool
    def add(a: int, b: int) -> int:
        return a + b

    limits = SessionLimits(tools=ToolLimits(max_tools=max_tools), max_queued_messages=max_queued)
    return Session("s1", clock=lambda: 0.0, limits=limits, server_tools=server.specs)


def test_seq_increases_by_one() -> None:
    session = make()
    pushed = [session.outbound.push(ServerPongMessage(nonce=str(n))) for n in range(3)]
    assert pushed == [1, 2, 3]
    assert session.last_seq == 3


def test_hello_replaces_client_tools_and_server_tools_come_first() -> None:
    session = make()
    report = session.greet([tool("a"), tool("b"), tool("add")])
    assert report.accepted == ["a", "b"]
    assert [(r.name, r.code) for r in report.rejected] == [("add", "duplicate_tool")]
    assert [t.name for t in session.tools()] == ["add", "a", "b"]
    session.greet([tool("c")])
    assert [t.name for t in session.tools()] == ["add", "c"]


def test_register_and_unregister_at_runtime() -> None:
    session = make(max_tools=2)
    session.greet([tool("a")])
    report = session.register([tool("b"), tool("c"), tool("a")])
    assert report.accepted == ["b"]
    assert {r.code for r in report.rejected} == {"too_many_tools", "duplicate_tool"}
    assert session.unregister(["a", "zzz"]) == (["a"], ["zzz"])
    assert session.register([tool("c")]).accepted == ["c"]
    assert session.find_tool("c") is not None and session.find_tool("a") is None


def test_one_run_at_a_time_and_messages_queue_in_order() -> None:
    session = make(max_queued=2)
    first = session.submit("one")
    assert first is not None and session.running
    assert session.submit("two") is None
    assert session.submit("three") is None
    with pytest.raises(ProtocolError) as caught:
        session.submit("four")
    assert caught.value.code is ErrorCode.QUEUE_FULL
    following = session.finish_run()
    assert following is not None and following[1] == "two" and following[0] != first
    following = session.finish_run()
    assert following is not None and following[1] == "three"
    assert session.finish_run() is None and not session.running


def test_drop_queue() -> None:
    session = make()
    session.submit("one")
    session.submit("two")
    assert session.drop_queue() == 1
    assert session.finish_run() is None


def test_conversation_reports_calls_without_exactly_one_result() -> None:
    conversation = Conversation()
    conversation.add(UserTurn("hi"))
    calls = (ToolCall("1", "t", "{}"), ToolCall("2", "t", "{}"), ToolCall("3", "t", "{}"))
    conversation.add(AssistantTurn("", calls))
    conversation.add(ToolResult("1", "t", TerminalStatus.OK, "x"))
    conversation.add(ToolResult("3", "t", TerminalStatus.OK, "x"))
    conversation.add(ToolResult("3", "t", TerminalStatus.ERROR, "x"))
    assert [c.id for c in conversation.unanswered_calls()] == ["2", "3"]
