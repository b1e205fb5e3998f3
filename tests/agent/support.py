"""Helpers for loop-level tests: a model that can fail or be watched, and invariant checks."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from bridge.agent.runtime import SessionRuntime
from bridge.conversation import AssistantTurn, ToolResult, Turn
from bridge.models.base import ModelEvent, TextDelta, ToolCallEvent
from bridge.models.retry import StepRetryPolicy
from bridge.testing import MemoryClient
from bridge.testing.memory import Frame
from bridge.toolspec import ToolSpec

BOUND_S = 5.0


def tool(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "parameters": {"type": "object"}, **extra}


class Gate:
    """A point in a scripted step where the model waits until the test opens it."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()


StepItem = str | ToolCallEvent | BaseException | Gate


class StepModel:
    """Plays one scripted step per request, like ScriptedModel, and also:

    - raises an exception placed in a step (after the items before it were streamed);
    - stops at a `Gate` until the test opens it;
    - counts what it has streamed and lets a test wait for the n-th request.
    """

    name = "steps"

    def __init__(self, steps: Sequence[Sequence[object]], *, retry_delay_s: float = 0.0) -> None:
        self.steps: list[list[StepItem]] = [[_item(i) for i in step] for step in steps]
        self.requests: list[list[Turn]] = []
        self.streamed = 0
        self.step_retry = StepRetryPolicy(base_delay_s=retry_delay_s, max_delay_s=retry_delay_s)
        self._asked = asyncio.Event()
        self._ids = 0

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        self.requests.append(list(conversation))
        self._asked.set()
        step: list[StepItem] = self.steps.pop(0) if self.steps else ["(end of script)"]
        return self._play(step)

    async def _play(self, step: list[StepItem]) -> AsyncIterator[ModelEvent]:
        for item in step:
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Gate):
                item.reached.set()
                await item.opened.wait()
                continue
            if isinstance(item, str):
                yield TextDelta(item)
            else:
                self._ids += 1
                yield ToolCallEvent(item.id or f"m_{self._ids}", item.name, item.arguments)
            self.streamed += 1
            await asyncio.sleep(0)

    async def wait_requests(self, count: int, timeout_s: float = BOUND_S) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.requests) < count:
                self._asked.clear()
                await self._asked.wait()


def _item(item: object) -> StepItem:
    # Steps are written as plain lists in tests; each item must be one the model can play.
    assert isinstance(item, str | ToolCallEvent | BaseException | Gate), item
    return item


async def until(condition: Callable[[], bool], *, turns: int = 10_000) -> None:
    """Let the loop run until `condition` holds, for at most `turns` turns of the loop.

    An in-memory run moves only when the loop runs its tasks, and no step of these tests waits
    on a timer, so counting turns bounds the wait without depending on the machine's speed.
    """
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"still not true after {turns} turns of the loop")


def kinds(frames: list[Frame]) -> list[str]:
    return [f["type"] for f in frames]


def of_type(frames: list[Frame], kind: str) -> list[Frame]:
    return [f for f in frames if f["type"] == kind]


def assert_each_call_settled_once(runtime: SessionRuntime, client: MemoryClient) -> None:
    """Every call the model made has exactly one result, in the conversation and on the wire,
    and nothing is left pending."""
    session = runtime.session
    assert session.conversation.unanswered_calls() == []
    wire_ids = [
        call.wire_id
        for turn in session.conversation
        if isinstance(turn, AssistantTurn)
        for call in turn.tool_calls
    ]
    announced = Counter(f["id"] for f in of_type(client.frames, "tool_result"))
    assert announced == Counter(wire_ids), (announced, wire_ids)
    results = Counter(t.call_id for t in session.conversation if isinstance(t, ToolResult))
    assert all(n == 1 for n in results.values())
    assert session.calls.pending() == []


def assert_seqs_consecutive(frames: list[Frame], start: int = 1) -> None:
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(start, start + len(seqs))), seqs
