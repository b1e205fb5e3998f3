"""The fast accept-check never accepts what jsonschema rejects, and accepts plain valid input."""

from __future__ import annotations

import random
from typing import Any

from jsonschema import Draft202012Validator

from bridge.fastschema import compile_check
from bridge.limits import ToolLimits
from bridge.toolspec import parse_tool

SCHEMAS: list[dict[str, Any]] = [
    {"type": "object", "properties": {}},
    {
        "type": "object",
        "properties": {
            "text": {"type": "string", "minLength": 1, "maxLength": 5},
            "count": {"type": "integer", "minimum": 0, "maximum": 10},
            "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 2},
            "mode": {"enum": ["a", "b"]},
            "code": {"type": "string", "pattern": "^[a-z]+$"},
            "maybe": {"type": ["string", "null"]},
            "flag": {"type": "boolean"},
        },
        "required": ["text"],
        "additionalProperties": False,
    },
    {
        "type": "object",
        "properties": {"nested": {"type": "object", "additionalProperties": {"type": "integer"}}},
        "minProperties": 1,
        "maxProperties": 2,
    },
    {"type": "array", "items": {"type": "object", "required": ["x"]}},
    {"type": "object", "properties": {"any": True, "never": False}},
]

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    11,
    0.5,
    1.0,
    2.5,
    float("nan"),
    "",
    "abc",
    "abcdef",
    "ABC",
    "a",
    "b",
    [],
    ["x"],
    ["x", "y", "z"],
    [1],
    {},
    {"x": 1},
    {"a": 1, "b": 2, "c": 3},
]
KEYS = ["text", "count", "ratio", "tags", "mode", "code", "maybe", "flag", "nested", "x", "any"]


def random_instance(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.5:
        return {rng.choice(KEYS): random_instance(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 2 and roll < 0.6:
        return [random_instance(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(VALUES)


def test_never_accepts_an_invalid_instance() -> None:
    rng = random.Random(5)
    for schema in SCHEMAS:
        check = compile_check(schema)
        assert check is not None
        validator = Draft202012Validator(schema)
        accepted = 0
        for _ in range(3000):
            instance = random_instance(rng)
            if check(instance):
                accepted += 1
                assert validator.is_valid(instance), (schema, instance)
        assert accepted > 0


def test_accepts_plain_valid_arguments() -> None:
    check = compile_check(SCHEMAS[1])
    assert check is not None
    assert check({"text": "hi", "count": 3, "ratio": 0.5, "tags": ["a"], "mode": "a"})
    assert check({"text": "hi", "count": 3.0, "maybe": None, "code": "abc", "flag": True})
    assert not check({"text": "hi", "count": True})
    assert not check({"text": "hi", "extra": 1})


def test_unsupported_keywords_fall_back_to_jsonschema() -> None:
    for schema in (
        {"type": "object", "anyOf": [{"required": ["a"]}]},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}, "$defs": {"x": {}}},
        {"type": "object", "x-vendor": 1},
        {"enum": [1, True]},
    ):
        assert compile_check(schema) is None


def test_tool_validation_messages_are_unchanged() -> None:
    spec = parse_tool(
        {"name": "t", "parameters": SCHEMAS[1], "output_schema": {"type": "integer"}},
        ToolLimits(),
    )
    assert spec.validate_arguments({"text": "ok"}) is None
    problem = spec.validate_arguments({"text": "too long here"})
    expected = next(iter(Draft202012Validator(SCHEMAS[1]).iter_errors({"text": "too long here"})))
    assert problem == f"at '/text': {expected.message}"
    assert spec.validate_result(3) is None
    assert spec.validate_result("3") == "'3' is not of type 'integer'"
