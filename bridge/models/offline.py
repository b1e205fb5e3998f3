"""The offline model: deterministic rules, no network, no weights. It is not an LLM.

It lets `agent-bridge serve` and its demo work on a machine with no model: it matches the
user's words against the registered tools' names and descriptions, calls the best match with
arguments filled from the schema and the message, then reports the result.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from bridge.conversation import AssistantTurn, ToolResult, Turn, UserTurn
from bridge.models.base import ModelEvent, TextDelta, ToolCallEvent
from bridge.toolspec import ToolSpec

__all__ = ["OfflineModel"]

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are as at be by can do does for from get give has have how i in is it its me my "
    "of on or please show tell that the their this to up use what whats which with you your "
    "user users tool tools".split()
)
_QUOTED = re.compile(r"[\"“']([^\"”']+)[\"”']")
_URL = re.compile(r"https?://\S+")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _words(text: str) -> set[str]:
    found = set()
    for word in _WORD.findall(text.lower().replace("_", " ").replace("-", " ")):
        if word not in _STOP:
            found.add(word)
            if len(word) > 3 and word.endswith("s"):
                found.add(word[:-1])
    return found


class OfflineModel:
    """Picks a registered tool from the user's words; answers from the tool's result."""

    name = "offline"

    def stream(
        self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ModelEvent]:
        return self._answer(list(conversation), list(tools))

    async def _answer(self, turns: list[Turn], tools: list[ToolSpec]) -> AsyncIterator[ModelEvent]:
        last_user = max((i for i, t in enumerate(turns) if isinstance(t, UserTurn)), default=-1)
        if last_user < 0:
            return
        message = turns[last_user]
        assert isinstance(message, UserTurn)
        results = [t for t in turns[last_user + 1 :] if isinstance(t, ToolResult)]
        if results:
            text = " ".join(_report(r, message.content) for r in results)
        else:
            tool = _pick(message.content, tools)
            if tool is not None:
                calls = sum(len(t.tool_calls) for t in turns if isinstance(t, AssistantTurn))
                yield TextDelta(f"Let me use {tool.name}. ")
                arguments = fill_arguments(tool.parameters, message.content)
                yield ToolCallEvent(f"offline_{calls + 1}", tool.name, json.dumps(arguments))
                return
            text = _menu(tools)
        for piece in re.findall(r"\S+\s*", text):
            yield TextDelta(piece)


def _pick(message: str, tools: list[ToolSpec]) -> ToolSpec | None:
    asked = _words(message)
    best, best_score = None, 0.0
    for tool in tools:
        name_words = _words(tool.name)
        score = 2.0 * len(asked & name_words) + len(asked & _words(tool.description))
        if score > best_score:
            best, best_score = tool, score
    return best


def _menu(tools: list[ToolSpec]) -> str:
    if not tools:
        return "I am the offline model and no tools are registered, so I can only chat."
    listing = "; ".join(
        f"{t.name} ({t.description.rstrip('.')})" if t.description else t.name for t in tools
    )
    return f"I am the offline model. I can use these tools: {listing}. Ask me about one of them."


def _report(result: ToolResult, question: str) -> str:
    if result.status.value != "ok":
        return f"{result.name} did not give a result ({result.content})."
    data = result.data
    if isinstance(data, Mapping) and len(data) > 1:
        # Answer what was asked ("the title of this page") rather than the whole record.
        asked = _words(question)
        wanted = {k: v for k, v in data.items() if isinstance(k, str) and k.lower() in asked}
        if wanted:
            shown = "; ".join(f"{k}: {_show(v)}" for k, v in wanted.items())
            return f"{result.name} returned {shown}"
    return f"{result.name} returned: {_show(data)}"


def _show(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, Mapping) and len(data) == 1:
        return _show(next(iter(data.values())))
    text = json.dumps(data, ensure_ascii=False)
    return text if len(text) <= 600 else text[:600] + "…"


def fill_arguments(schema: Mapping[str, Any], message: str) -> dict[str, Any]:
    """Arguments for a call: required properties always, others when they have a default."""
    properties: Mapping[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    # Numbers are handed out in the order they appear, so "add 2 and 40" fills a=2, b=40.
    numbers = iter(_NUMBER.findall(message))
    arguments: dict[str, Any] = {}
    for name, prop in properties.items():
        if not isinstance(prop, Mapping):
            continue
        if name in required or "default" in prop:
            arguments[name] = _value_for(name, prop, message, numbers)
    return arguments


def _value_for(name: str, prop: Mapping[str, Any], message: str, numbers: Iterator[str]) -> Any:
    if "default" in prop:
        return prop["default"]
    if "const" in prop:
        return prop["const"]
    if prop.get("enum"):
        mentioned = [v for v in prop["enum"] if str(v).lower() in message.lower()]
        return (mentioned or prop["enum"])[0]
    if prop.get("examples"):
        return prop["examples"][0]
    kind = prop.get("type")
    if kind in ("integer", "number"):
        found = next(numbers, None)
        if found is not None:
            value = float(found)
            return int(value) if kind == "integer" else value
        return prop.get("minimum", 1)
    if kind == "boolean":
        return False
    if kind == "array":
        return []
    if kind == "object":
        return {}
    url = _URL.search(message)
    if url and ("url" in name.lower() or prop.get("format") == "uri"):
        return url.group().rstrip(".,)")
    quoted = _QUOTED.search(message)
    return quoted.group(1) if quoted else message
