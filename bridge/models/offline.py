"""The offline model: deterministic rules, no network, no weights. It is not an LLM.

It lets `agent-bridge serve` and its demo work on a machine with no model: it matches the
user's words against the registered tools' names and descriptions, calls the best match with
arguments filled from the schema and the message, then reports the result. A few phrasings that
word matching gets wrong have rules of their own ("copy X to the clipboard", "what did I
select"), and a greeting gets a greeting back.
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
# "copy X to the clipboard": word matching alone would tie clipboard_read with clipboard_write
# and hand the whole sentence over as the text.
_COPY = re.compile(
    r"^\W*(?:please\s+)?(?:copy|put|write|place)\s+(?P<text>.+?)\s+(?:to|into|onto|on|in)\s+"
    r"(?:the\s+|my\s+)?clipboard\W*$",
    re.IGNORECASE | re.DOTALL,
)
# "what did I select", "what have I selected", "the text I highlighted", "my selection"...
_SELECTION = re.compile(
    r"\b(?:did|have|had)\s+i\s+(?:just\s+)?(?:select|highlight)(?:ed)?\b"
    r"|\bi\s*(?:'ve\s+|have\s+|just\s+)?(?:selected|highlighted)\b"
    r"|\b(?:my|current)\s+selection\b"
    r"|\bselected\s+text\b",
    re.IGNORECASE,
)
_GREETING = frozenset("hi hello hey hiya howdy greetings yo hallo".split())
# Words that may come with a greeting without asking for anything ("good morning there").
_GREETING_FILLER = frozenset("good morning afternoon evening day there again all everyone".split())


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
        elif _is_greeting(message.content):
            text = _greeting(tools)
        else:
            chosen = _route(message.content, tools)
            if chosen is not None:
                tool, arguments = chosen
                calls = sum(len(t.tool_calls) for t in turns if isinstance(t, AssistantTurn))
                yield TextDelta(f"Let me use {tool.name}. ")
                yield ToolCallEvent(f"offline_{calls + 1}", tool.name, json.dumps(arguments))
                return
            text = _menu(tools)
        for piece in re.findall(r"\S+\s*", text):
            yield TextDelta(piece)


def _route(message: str, tools: list[ToolSpec]) -> tuple[ToolSpec, dict[str, Any]] | None:
    """The tool to call and its arguments: a phrasing rule when one applies and its tool is
    registered, else the best word match."""
    by_name = {t.name: t for t in tools}
    copy = _COPY.match(message)
    if copy is not None and "clipboard_write" in by_name:
        text = copy.group("text").strip()
        quoted = _QUOTED.fullmatch(text)
        return by_name["clipboard_write"], {"text": quoted.group(1) if quoted else text}
    if _SELECTION.search(message) and "get_selection" in by_name:
        tool = by_name["get_selection"]
        return tool, fill_arguments(tool.parameters, message)
    picked = _pick(message, tools)
    if picked is None:
        return None
    return picked, fill_arguments(picked.parameters, message)


def _is_greeting(message: str) -> bool:
    """Only a greeting: "hello", "hi there", "good morning!"; not "hello, read the page"."""
    words = _WORD.findall(message.lower())
    if not words or len(words) > 4:
        return False
    greeted = words[0] in _GREETING or (words[0] == "good" and len(words) > 1)
    return greeted and all(w in _GREETING or w in _GREETING_FILLER for w in words)


def _greeting(tools: list[ToolSpec]) -> str:
    # One sentence on what it can do; the tool list is for when a question finds no tool.
    if not tools:
        return "Hello! I am the offline model, and with no tools registered I can only chat."
    example = (
        "What is the title of this page?" if any(t.name == "read_page" for t in tools) else None
    )
    hint = f", for example “{example}”" if example else ""
    return (
        f"Hello! I am the offline model: ask in plain words and I will call the best of this "
        f"page's {len(tools)} tools{hint}."
    )


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
    # Names only: the descriptions of a whole catalog make a wall of text nobody reads.
    listing = ", ".join(t.name for t in tools)
    return (
        f"I am the offline model and found no tool for that. I can use: {listing}. "
        "Ask about one of them in plain words."
    )


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
