"""The offline model: deterministic tool choice, argument filling, answers from results."""

from __future__ import annotations

import json
from typing import Any

import pytest

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


CATALOG_LIKE = [
    spec("read_page", "Read the text and title of the current page."),
    spec("clipboard_read", "Read the text on the clipboard."),
    spec(
        "clipboard_write",
        "Write text to the clipboard, replacing what was copied before.",
        {
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    ),
    spec("get_selection", "Get the text the person has selected (highlighted) on this page."),
    spec("query_selector", "Text of the elements matching a CSS selector."),
]


async def only_call(message: str, tools: list[ToolSpec]) -> ToolCallEvent:
    out = await events([UserTurn(message)], tools)
    calls = [e for e in out if isinstance(e, ToolCallEvent)]
    assert len(calls) == 1, out
    return calls[0]


async def text_of(message: str, tools: list[ToolSpec]) -> str:
    out = await events([UserTurn(message)], tools)
    assert not any(isinstance(e, ToolCallEvent) for e in out)
    return "".join(e.text for e in out if isinstance(e, TextDelta))


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("copy hello world to the clipboard", "hello world"),
        ('Copy "Meet at 10:30, room 4" to the clipboard.', "Meet at 10:30, room 4"),
        ("please put the order number 1234 on my clipboard", "the order number 1234"),
    ],
)
async def test_copy_x_to_the_clipboard_writes_x(message: str, text: str) -> None:
    call = await only_call(message, CATALOG_LIKE)
    assert call.name == "clipboard_write"
    assert json.loads(call.arguments) == {"text": text}


async def test_reading_the_clipboard_still_reads_it() -> None:
    call = await only_call("what is on the clipboard?", CATALOG_LIKE)
    assert call.name == "clipboard_read"


@pytest.mark.parametrize(
    "message",
    [
        "What did I select?",
        "what have I selected",
        "Read me the text I highlighted",
        "my selection?",
    ],
)
async def test_what_did_i_select_gets_the_selection(message: str) -> None:
    call = await only_call(message, CATALOG_LIKE)
    assert call.name == "get_selection"
    assert json.loads(call.arguments) == {}


async def test_the_rules_need_their_tool_registered() -> None:
    # Without clipboard_write the sentence goes to word matching like any other.
    tools = [t for t in CATALOG_LIKE if t.name not in ("clipboard_write", "get_selection")]
    assert (await only_call("copy hello to the clipboard", tools)).name == "clipboard_read"


@pytest.mark.parametrize("message", ["hello", "Hi there!", "hey", "Good morning", "hello again"])
async def test_a_greeting_gets_one_sentence_not_the_catalog(message: str) -> None:
    text = await text_of(message, CATALOG_LIKE)
    assert text.startswith("Hello!") and "offline model" in text
    assert text.count(".") <= 1 and text.count("?") <= 1  # one sentence, one example question
    for tool in CATALOG_LIKE:
        assert tool.description not in text and tool.name not in text
    assert "5 tools" in text


async def test_a_greeting_with_a_question_answers_the_question() -> None:
    call = await only_call("hello, what is the title of this page?", CATALOG_LIKE)
    assert call.name == "read_page"


async def test_a_greeting_with_no_tools_says_so() -> None:
    assert "no tools" in await text_of("hello", [])
