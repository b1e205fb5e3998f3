"""The conversation in a provider-neutral shape, with the invariant every provider needs:
each tool call the model made is followed by exactly one terminal result."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bridge.calls import TerminalStatus

__all__ = [
    "AssistantTurn",
    "Conversation",
    "ToolCall",
    "ToolResult",
    "Turn",
    "UserTurn",
    "result_text",
]


@dataclass(frozen=True, slots=True)
class UserTurn:
    content: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call as the model emitted it; `arguments` is the raw JSON text, possibly broken."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class AssistantTurn:
    content: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    name: str
    status: TerminalStatus
    content: str
    data: Any = None


Turn = UserTurn | AssistantTurn | ToolResult


def result_text(status: TerminalStatus, data: Any = None, detail: str | None = None) -> str:
    """The text the model reads for a result: data for `ok`, a sentence it can act on otherwise."""
    if status is TerminalStatus.OK:
        return data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    sentences = {
        TerminalStatus.ERROR: "The tool failed",
        TerminalStatus.INVALID_ARGUMENTS: "The arguments were invalid and the tool was not run",
        TerminalStatus.DENIED: "The user denied this tool call",
        TerminalStatus.TIMED_OUT: "The tool did not answer in time",
        TerminalStatus.CANCELLED: "The call was cancelled before the tool answered",
    }
    text = f"[{status.value}] {sentences[status]}"
    if detail:
        text += f": {detail}"
    if status is TerminalStatus.INVALID_ARGUMENTS:
        text += ". Correct the arguments and call the tool again."
    return text


@dataclass(slots=True)
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def add(self, turn: Turn) -> None:
        self.turns.append(turn)

    def __iter__(self) -> Iterator[Turn]:
        return iter(self.turns)

    def __len__(self) -> int:
        return len(self.turns)

    def results_by_call(self) -> dict[str, list[ToolResult]]:
        found: dict[str, list[ToolResult]] = {}
        for turn in self.turns:
            if isinstance(turn, ToolResult):
                found.setdefault(turn.call_id, []).append(turn)
        return found

    def unanswered_calls(self) -> list[ToolCall]:
        """Calls without exactly one result; empty whenever the bridge is at rest."""
        results = self.results_by_call()
        return [
            call
            for turn in self.turns
            if isinstance(turn, AssistantTurn)
            for call in turn.tool_calls
            if len(results.get(call.id, ())) != 1
        ]
