"""The model contract: a stream of text deltas and complete tool calls, nothing else.

Providers assemble argument fragments themselves, so the loop only ever sees whole calls.
Cancelling the consuming task must cancel the stream, which async generators do by design.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from bridge.conversation import Turn
from bridge.errors import BridgeError, ErrorCode
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


class ModelError(BridgeError):
    """The model could not answer; the run ends with `error`, the session lives on.

    `broken_stream` says the answer had started and then broke (dropped, stalled, cut short,
    undecodable): asking again may well succeed, which the loop does within its retry budget.
    `transient` says a new request could succeed later (a 429, a 5xx, a refused connection)
    although this one never started; `retry_after_s` is the wait the server asked for.
    """

    code = ErrorCode.MODEL_ERROR

    def __init__(
        self,
        message: str,
        *,
        code: ErrorCode | None = None,
        broken_stream: bool = False,
        transient: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.broken_stream = broken_stream
        self.transient = transient or broken_stream
        self.retry_after_s = retry_after_s


@runtime_checkable
class Model(Protocol):
    """Anything that streams a step of the conversation."""

    name: str

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]: ...
