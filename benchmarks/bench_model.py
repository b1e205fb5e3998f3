"""A model for benchmarks: it does exactly what the user's message says, at no cost of its own.

The message is a command: `calls N` makes N sequential calls of the echo tool (one per step)
and then answers; `tokens N` streams N tokens as fast as the loop takes them; `ttft` answers
with one token; `stream` streams paced tokens (about one per half millisecond, bounded) until
the run is stopped. One instance serves one session, so the count of calls left is its state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from common import ECHO_ARGS_JSON, TOOL_NAME

from bridge.conversation import Turn, UserTurn
from bridge.models.base import ModelEvent, TextDelta, ToolCallEvent
from bridge.toolspec import ToolSpec

_STREAM_BOUND = 20_000


class BenchModel:
    name = "bench"

    def __init__(self) -> None:
        self._calls_left = 0

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        last = conversation[-1] if conversation else None
        if isinstance(last, UserTurn):
            command, _, arg = last.content.partition(" ")
            count = int(arg) if arg.isdigit() else 1
            if command == "calls":
                self._calls_left = count
            elif command == "tokens":
                return _tokens(count)
            elif command == "stream":
                return _paced()
            elif command == "ttft":
                return _tokens(1)
        if self._calls_left > 0:
            self._calls_left -= 1
            return _one(ToolCallEvent("", TOOL_NAME, ECHO_ARGS_JSON))
        return _one(TextDelta("done"))


async def _one(event: ModelEvent) -> AsyncIterator[ModelEvent]:
    yield event


async def _tokens(count: int) -> AsyncIterator[ModelEvent]:
    delta = TextDelta("tok ")
    for _ in range(count):
        yield delta


async def _paced() -> AsyncIterator[ModelEvent]:
    delta = TextDelta("tok ")
    for _ in range(_STREAM_BOUND):
        yield delta
        await asyncio.sleep(0.0005)
