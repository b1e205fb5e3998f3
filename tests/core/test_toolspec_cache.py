"""Identical definitions are checked once and share one spec; anything different is its own."""

from __future__ import annotations

import pytest

from bridge.errors import ToolDefinitionError
from bridge.limits import ToolLimits
from bridge.toolspec import parse_tool

DEFINITION = {
    "name": "lookup",
    "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
}


def test_the_same_definition_is_parsed_once() -> None:
    first = parse_tool(dict(DEFINITION), ToolLimits())
    again = parse_tool(dict(DEFINITION), ToolLimits())
    assert again is first
    assert again.validate_arguments({"word": 3}) == "at '/word': 3 is not of type 'string'"


def test_limits_source_and_content_keep_definitions_apart() -> None:
    base = parse_tool(dict(DEFINITION), ToolLimits())
    assert parse_tool(dict(DEFINITION), ToolLimits(), source="server") is not base
    assert parse_tool(dict(DEFINITION), ToolLimits(max_tools=3)) is not base
    changed = parse_tool({**DEFINITION, "description": "Other."}, ToolLimits())
    assert changed is not base and changed.description == "Other."


def test_a_bad_definition_fails_every_time() -> None:
    bad = {**DEFINITION, "parameters": {"type": "array"}}
    for _ in range(2):
        with pytest.raises(ToolDefinitionError):
            parse_tool(bad, ToolLimits())
