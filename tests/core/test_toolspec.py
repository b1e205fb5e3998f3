"""Tool definitions: registration rules, limits, compiled validators. No event loop."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.errors import ErrorCode, ToolDefinitionError
from bridge.limits import ToolLimits
from bridge.toolspec import parse_tool, register_many

LIMITS = ToolLimits(max_tools=3, max_schema_bytes=2000, max_schema_depth=8, max_timeout_ms=5000)


def tool(name: str = "lookup", **extra: Any) -> dict[str, Any]:
    definition: dict[str, Any] = {
        "name": name,
        "description": "Look a word up.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
            "required": ["word"],
            "additionalProperties": False,
        },
    }
    definition.update(extra)
    return definition


def rejection(raw: Any) -> ToolDefinitionError:
    with pytest.raises(ToolDefinitionError) as caught:
        parse_tool(raw, LIMITS)
    return caught.value


def test_valid_definition_compiles_and_validates_arguments() -> None:
    spec = parse_tool(tool(read_only=True), LIMITS)
    assert spec.read_only and not spec.interactive and spec.source == "client"
    assert spec.validate_arguments({"word": "x", "limit": 2}) is None
    assert "required" in (spec.validate_arguments({}) or "")
    problem = spec.validate_arguments({"word": "x", "limit": 0})
    assert problem is not None and "/limit" in problem


def test_result_is_checked_against_output_schema() -> None:
    spec = parse_tool(tool(output_schema={"type": "object", "required": ["ok"]}), LIMITS)
    assert spec.validate_result({"ok": True}) is None
    assert spec.validate_result({"nope": 1}) is not None
    assert parse_tool(tool(), LIMITS).validate_result("anything") is None


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "dot.ted", "ünï", 7, None])
def test_bad_names_are_refused(name: Any) -> None:
    assert "name" in rejection(tool(name=name)).message


def test_name_may_use_the_whole_alphabet() -> None:
    assert parse_tool(tool(name="A-z_09" + "x" * 58), LIMITS).name.startswith("A-z_09")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"parameters": {"type": "array"}}, '"type": "object"'),
        ({"parameters": {"type": "object", "properties": {"a": {"type": 5}}}}, "Draft 2020-12"),
        ({"parameters": {"type": "object", "minProperties": -1}}, "Draft 2020-12"),
        ({"parameters": "not a schema"}, "JSON Schema object"),
        ({"description": "d" * 5000}, "description"),
        ({"description": 3}, "description"),
        ({"timeout_ms": 0}, "timeout_ms"),
        ({"timeout_ms": True}, "timeout_ms"),
        ({"interactive": "yes"}, "interactive"),
        ({"colour": "blue"}, "unknown fields"),
        ({"output_schema": {"type": "nonsense"}}, "output_schema"),
    ],
)
def test_invalid_definitions_are_refused_with_a_reason(
    changes: dict[str, Any], fragment: str
) -> None:
    error = rejection(tool(**changes))
    assert error.code is ErrorCode.INVALID_TOOL
    assert fragment in error.message


@pytest.mark.parametrize(
    "ref",
    [
        "https://example.com/schema.json",
        "http://127.0.0.1/x",
        "file:///etc/passwd",
        "other.json#/a",
    ],
)
def test_non_local_refs_are_refused_without_fetching(ref: str) -> None:
    params = {"type": "object", "properties": {"a": {"$ref": ref}}}
    error = rejection(tool(parameters=params))
    assert error.code is ErrorCode.NETWORK_REF


def test_local_refs_work() -> None:
    params = {
        "type": "object",
        "$defs": {"word": {"type": "string", "minLength": 2}},
        "properties": {"word": {"$ref": "#/$defs/word"}},
    }
    spec = parse_tool(tool(parameters=params), LIMITS)
    assert spec.validate_arguments({"word": "ok"}) is None
    assert spec.validate_arguments({"word": "x"}) is not None


def test_schema_size_and_depth_are_limited() -> None:
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(200)}}
    assert "bytes" in rejection(tool(parameters=wide)).message
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(10):
        deep = {"type": "object", "properties": {"n": deep}}
    assert "levels deep" in rejection(tool(parameters=deep)).message


def test_timeout_is_capped_by_the_server_maximum() -> None:
    assert parse_tool(tool(timeout_ms=60_000), LIMITS).timeout_ms == 5000


def test_batch_accepts_the_valid_and_rejects_the_rest_one_by_one() -> None:
    raws = [
        tool("a"),
        tool("b", parameters={"type": "string"}),
        tool("a"),
        "not an object",
        tool("c"),
        tool("d"),
        tool("e"),
    ]
    accepted, rejected = register_many(raws, {}, LIMITS)
    assert [s.name for s in accepted] == ["a", "c", "d"]
    assert [(r.name, r.code) for r in rejected] == [
        ("b", "invalid_tool"),
        ("a", "duplicate_tool"),
        (None, "invalid_tool"),
        ("e", "too_many_tools"),
    ]


def test_server_tool_names_are_reserved() -> None:
    accepted, rejected = register_many([tool("add")], {}, LIMITS, reserved=["add"])
    assert not accepted and rejected[0].code == "duplicate_tool"


def test_to_wire_round_trips() -> None:
    spec = parse_tool(tool(timeout_ms=100, destructive=True), LIMITS)
    again = parse_tool(spec.to_wire(), LIMITS)
    assert again == spec
