"""The model contract: a stream of text deltas and complete tool calls, nothing else.

Providers assemble argument fragments themselves, so the loop only ever sees whole calls.
Cancelling the consuming task must cancel the stream, which async generators do by design.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bridge.conversation import Turn
from bridge.errors import ModelError
from bridge.toolspec import ToolSpec

__all__ = [
    "Model",
    "ModelError",
    "ModelEvent",
    "TextDelta",
    "ToolCallEvent",
    "UsageEvent",
]


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class UsageEvent:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


ModelEvent = TextDelta | ToolCallEvent | UsageEvent


@runtime_checkable
class Model(Protocol):
    """Anything that streams a step of the conversation."""

    name: str

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]: ...
