"""A model that plays back a script, for tests of anything built on the bridge."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.conversation import Turn
from bridge.models.base import ModelEvent, TextDelta, ToolCallEvent, UsageEvent
from bridge.toolspec import ToolSpec

__all__ = ["Hang", "ScriptedModel", "call"]


@dataclass(frozen=True, slots=True)
class Hang:
    """Stop in the middle of a step until the run is cancelled (or `release` is set)."""

    release: asyncio.Event | None = None


def call(
    name: str, arguments: dict[str, Any] | str | None = None, *, id: str = ""
) -> ToolCallEvent:
    """A scripted tool call; pass a string to send arguments that are not valid JSON."""
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
    return ToolCallEvent(id=id, name=name, arguments=raw)


ScriptItem = str | ToolCallEvent | UsageEvent | Hang


@dataclass
class ScriptedModel:
    """Each call to `stream` plays the next step; what it was sent is kept in `requests`."""

    steps: list[list[ScriptItem]]
    name: str = "scripted"
    requests: list[list[Turn]] = field(default_factory=list)
    tools_seen: list[list[str]] = field(default_factory=list)
    cancelled: int = 0
    _ids: int = 0

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        self.requests.append(list(conversation))
        self.tools_seen.append([t.name for t in tools])
        step = self.steps.pop(0) if self.steps else ["(end of script)"]
        return self._play(step)

    async def _play(self, step: Iterable[ScriptItem]) -> AsyncIterator[ModelEvent]:
        try:
            for item in step:
                if isinstance(item, str):
                    yield TextDelta(item)
                elif isinstance(item, Hang):
                    await (item.release or asyncio.Event()).wait()
                elif isinstance(item, ToolCallEvent) and not item.id:
                    self._ids += 1
                    yield ToolCallEvent(f"scripted_{self._ids}", item.name, item.arguments)
                else:
                    yield item
                await asyncio.sleep(0)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
