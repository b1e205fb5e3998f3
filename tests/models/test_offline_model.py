"""The offline model: deterministic tool choice, argument filling, answers from results."""

from __future__ import annotations

import json
from typing import Any

from bridge.calls import TerminalStatus
from bridge.conversation import AssistantTurn, ToolCall, Turn, UserTurn, make_result
from bridge.limits import ToolLimits
from bridge.models.base import ModelEvent, TextDelta, ToolCallEvent
from bridge.models.offline import OfflineModel, fill_arguments
from bridge.toolspec import ToolSpec, parse_tool


def spec(name: str, description: str, parameters: dict[str, Any] | None = None) -> ToolSpec:
    raw = {"name": name, "description": description}
    if parameters is not None:
        raw["parameters"] = parameters
    return parse_tool(raw, ToolLimits())


TOOLS = [
    spec("read_page", "Read the text and title of the current page."),
    spec(
        "get_weather",
        "Current weather for a city.",
        {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "units": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city", "units", "days"],
        },
    ),
]


async def events(turns: list[Turn], tools: list[ToolSpec]) -> list[ModelEvent]:
    return [event async for event in OfflineModel().stream(turns, tools)]


async def test_picks_the_tool_matching_the_words() -> None:
    out = await events([UserTurn("What is the title of this page?")], TOOLS)
    calls = [e for e in out if isinstance(e, ToolCallEvent)]
    assert [c.name for c in calls] == ["read_page"]
    assert json.loads(calls[0].arguments) == {}


async def test_fills_arguments_from_the_schema_and_the_message() -> None:
    out = await events([UserTurn('weather in "Paris" for 3 days, in fahrenheit')], TOOLS)
    call = next(e for e in out if isinstance(e, ToolCallEvent))
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris", "units": "fahrenheit", "days": 3}


def test_defaults_and_examples_win() -> None:
    schema = {
        "type": "object",
        "properties": {
            "limit": {"type": "integer", "default": 10},
            "mode": {"type": "string", "examples": ["fast"]},
            "url": {"type": "string", "format": "uri"},
            "optional": {"type": "string"},
        },
        "required": ["mode", "url"],
    }
    filled = fill_arguments(schema, "open https://example.org/page, please")
    assert filled == {"limit": 10, "mode": "fast", "url": "https://example.org/page"}


async def test_answers_from_the_result() -> None:
    turns: list[Turn] = [
        UserTurn("title?"),
        AssistantTurn("", (ToolCall("c1", "read_page", "{}"),)),
        make_result(
            ToolCall("c1", "read_page", "{}"), TerminalStatus.OK, data={"title": "Demo page"}
        ),
    ]
    out = await events(turns, TOOLS)
    text = "".join(e.text for e in out if isinstance(e, TextDelta))
    assert text == "read_page returned: Demo page"
    assert not any(isinstance(e, ToolCallEvent) for e in out)


async def test_without_a_match_it_lists_its_tools() -> None:
    out = await events([UserTurn("zzz qqq")], TOOLS)
    text = "".join(e.text for e in out if isinstance(e, TextDelta))
    assert "offline model" in text and "read_page" in text and "get_weather" in text
    out = await events([UserTurn("hello")], [])
    assert "no tools" in "".join(e.text for e in out if isinstance(e, TextDelta))


async def test_is_deterministic() -> None:
    turns: list[Turn] = [UserTurn("weather in Oslo for 2 days")]
    assert await events(turns, TOOLS) == await events(turns, TOOLS)
