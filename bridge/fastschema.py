"""A compiled accept-check for the plain subset of JSON Schema that tool definitions use.

`jsonschema` spends about 50 us on a 200-byte argument object, which was the largest single
cost of a tool call (docs/benchmarks.md). Nearly every tool schema is plain: types, properties,
required, items, lengths, bounds, string enums. For such a schema `compile_check` returns a
function that answers True only when the instance is certainly valid under Draft 2020-12; on
False (or for a schema using anything else, where it returns None) the caller asks `jsonschema`,
which stays the single authority for rejections and their messages. Being wrong in the slow
direction is allowed; accepting what `jsonschema` would reject is not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bridge import regex

__all__ = ["Check", "compile_check"]

Check = Callable[[Any], bool]

# Keywords that never make an instance invalid (format is not asserted: no format checker).
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
    }
)
_HANDLED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "minProperties",
        "maxProperties",
        "enum",
        "pattern",
    }
)


class _Unsupported(Exception):
    pass


def compile_check(schema: Any) -> Check | None:
    """A sound accept-check for `schema`, or None when it uses anything outside the subset."""
    try:
        return _compile(schema)
    except (_Unsupported, regex.PatternError, TypeError, ValueError):
        return None


def _is_number(value: Any) -> bool:
    return (type(value) is int) or (type(value) is float)


def _type_check(name: str) -> Check:
    if name == "string":
        return lambda v: type(v) is str
    if name == "object":
        return lambda v: isinstance(v, dict)
    if name == "array":
        return lambda v: isinstance(v, list)
    if name == "boolean":
        return lambda v: type(v) is bool
    if name == "null":
        return lambda v: v is None
    if name == "number":
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    if name == "integer":
        return lambda v: (
            (isinstance(v, int) and not isinstance(v, bool))
            or (isinstance(v, float) and v.is_integer())
        )
    raise _Unsupported(name)


def _compile(schema: Any) -> Check:
    if schema is True:
        return lambda _v: True
    if schema is False:
        return lambda _v: False
    if not isinstance(schema, Mapping):
        raise _Unsupported("schema")
    for key in schema:
        if key not in _HANDLED and key not in _ANNOTATIONS:
            raise _Unsupported(key)
    checks: list[Check] = []
    if "type" in schema:
        names = schema["type"]
        names = [names] if isinstance(names, str) else list(names)
        alternatives = [_type_check(name) for name in names]
        if len(alternatives) == 1:
            checks.append(alternatives[0])
        else:
            checks.append(lambda v: any(alt(v) for alt in alternatives))
    checks.extend(_object_checks(schema))
    checks.extend(_array_checks(schema))
    checks.extend(_string_checks(schema))
    checks.extend(_number_checks(schema))
    if "enum" in schema:
        values = schema["enum"]
        if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
            raise _Unsupported("enum")
        allowed = frozenset(values)
        checks.append(lambda v: type(v) is str and v in allowed)
    if not checks:
        return lambda _v: True
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)


def _object_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise _Unsupported("properties")
    compiled = {name: _compile(sub) for name, sub in properties.items()}
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _Unsupported("required")
    extra: Check | None = None
    if "additionalProperties" in schema:
        extra = _compile(schema["additionalProperties"])
    low = schema.get("minProperties")
    high = schema.get("maxProperties")
    for bound in (low, high):
        if bound is not None and type(bound) is not int:
            raise _Unsupported("properties bound")
    if not (compiled or required or extra or low is not None or high is not None):
        return checks
    needed = tuple(required)
    items = tuple(compiled.items())

    def check_object(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name in needed:
            if name not in value:
                return False
        for name, check in items:
            if name in value and not check(value[name]):
                return False
        if extra is not None:
            for name, item in value.items():
                if name not in compiled and not extra(item):
                    return False
        if low is not None and len(value) < low:
            return False
        return high is None or len(value) <= high

    checks.append(check_object)
    return checks


def _array_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    if "items" in schema:
        item_check = _compile(schema["items"])
        checks.append(lambda v: not isinstance(v, list) or all(item_check(x) for x in v))
    low, high = schema.get("minItems"), schema.get("maxItems")
    for bound in (low, high):
        if bound is not None and type(bound) is not int:
            raise _Unsupported("items bound")
    if low is not None:
        checks.append(lambda v: not isinstance(v, list) or len(v) >= low)
    if high is not None:
        checks.append(lambda v: not isinstance(v, list) or len(v) <= high)
    return checks


def _string_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    low, high = schema.get("minLength"), schema.get("maxLength")
    for bound in (low, high):
        if bound is not None and type(bound) is not int:
            raise _Unsupported("length bound")
    if low is not None:
        checks.append(lambda v: type(v) is not str or len(v) >= low)
    if high is not None:
        checks.append(lambda v: type(v) is not str or len(v) <= high)
    if "pattern" in schema:
        if not isinstance(schema["pattern"], str):
            raise _Unsupported("pattern")
        # The same engine as the validators' `pattern` keyword, so the two never disagree.
        source = schema["pattern"]
        regex.compile_pattern(source)
        checks.append(lambda v: type(v) is not str or regex.search(source, v))
    return checks


def _number_checks(schema: Mapping[str, Any]) -> list[Check]:
    checks: list[Check] = []
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key not in schema:
            continue
        bound = schema[key]
        if not _is_number(bound):
            raise _Unsupported(key)
        checks.append(_bound_check(key, bound))
    return checks


def _bound_check(key: str, bound: float) -> Check:
    def applies(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if key == "minimum":
        return lambda v: not applies(v) or v >= bound
    if key == "maximum":
        return lambda v: not applies(v) or v <= bound
    if key == "exclusiveMinimum":
        return lambda v: not applies(v) or v > bound
    return lambda v: not applies(v) or v < bound
