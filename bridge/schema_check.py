"""JSON Schemas from clients, compiled to validators that cannot hold the event loop.

A definition is checked against the Draft 2020-12 meta-schema (with jsonschema-rs: hundreds of
times faster than jsonschema, figures in docs/security.md), within the bridge's size and depth
limits, with local references only; every regular expression runs in RE2's linear time; and
every check of a value stops at its time budget. jsonschema stays the judge of every rejection,
since its messages are what the model reads.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from referencing import Registry

from bridge import regex
from bridge.errors import ErrorCode, ToolDefinitionError
from bridge.limits import ToolLimits

__all__ = ["compile_schema", "definition_text", "echo", "first_error"]

_LOCAL_REF_KEYS = ("$ref", "$dynamicRef")


# Without an explicit registry, jsonschema falls back to one that fetches remote refs over the
# network; an empty registry's retrieval always fails. Non-local refs are refused at registration
# too, so this is the belt to that brace.
_OFFLINE_REGISTRY: Registry[Any] = Registry()

_DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
# jsonschema checks a definition against the meta-schema at about 1.5 ms per KB, on the event
# loop; jsonschema-rs checks the same meta-schema hundreds of times faster (figures in
# docs/security.md). The meta-schema is its schema and the client's schema only an instance, so a
# client's `$schema` is data to it and nothing is ever fetched.
_META = jsonschema_rs.Draft202012Validator(
    Draft202012Validator.META_SCHEMA, offline=True, validate_formats=False
)
_MAX_ECHO = 80


class _TooCostly(Exception):
    pass


class _Deadline(threading.local):
    # Validation runs to its end on the thread that started it, so a per-thread deadline is the
    # deadline of the one validation in progress there.
    at = float("inf")


_deadline = _Deadline()


def _timed(keyword: Callable[..., Any]) -> Callable[..., Any]:
    def run(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        if time.perf_counter() > _deadline.at:
            raise _TooCostly
        return keyword(validator, value, instance, schema)

    return run


# jsonschema runs `pattern`, `patternProperties` and the pattern part of `additionalProperties`
# with Python's backtracking `re`; these three run them with RE2 instead. `unevaluatedProperties`
# also reads `patternProperties` with `re`, so schemas combining the two are refused.
def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not regex.search(pattern, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Any
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        for name, value in instance.items():
            if regex.search(pattern, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, extra: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    known = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    extras = [
        name
        for name in instance
        if name not in known and not any(regex.search(p, name) for p in patterns)
    ]
    if validator.is_type(extra, "object"):
        for name in extras:
            yield from validator.descend(instance[name], extra, path=name)
    elif extra is False and extras:
        names = ", ".join(repr(name) for name in sorted(extras, key=str))
        if patterns:
            verb = "does" if len(extras) == 1 else "do"
            listed = ", ".join(repr(p) for p in sorted(patterns))
            yield ValidationError(f"{names} {verb} not match any of the regexes: {listed}")
        else:
            verb = "was" if len(extras) == 1 else "were"
            yield ValidationError(
                f"Additional properties are not allowed ({names} {verb} unexpected)"
            )


_KEYWORDS = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
}
_Validator: Any = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {name: _timed(fn) for name, fn in _KEYWORDS.items()}
)


def first_error(validator: Validator, instance: Any, budget_s: float) -> str | None:
    _deadline.at = time.perf_counter() + budget_s
    try:
        error = next(iter(validator.iter_errors(instance)), None)
    except _TooCostly:
        return (
            f"checking this value against the schema took longer than {budget_s * 1000:g} ms; "
            "it is treated as not matching"
        )
    except RecursionError:
        return "the value nests too deeply to be checked"
    except Exception as exc:
        # The definition passed the meta-schema, the steps are bounded and every pattern was
        # compiled at registration: what is left is the schema's own fault (a `$ref` to a
        # pointer that does not exist), and the value cannot be shown to match it.
        return f"the schema could not be evaluated ({type(exc).__name__})"
    finally:
        _deadline.at = float("inf")
    if error is None:
        return None
    return _format_validation_error(error)


_MAX_MESSAGE = 500


def _format_validation_error(error: ValidationError) -> str:
    # jsonschema repeats the failing value in its message: a short excerpt tells the model as
    # much, and a 1 MB value must not travel back in every error.
    message = error.message
    if len(message) > _MAX_MESSAGE:
        # The value comes first and the rule last: keep both ends.
        half = _MAX_MESSAGE // 2
        message = f"{message[:half]}...{message[-half:]}"
    where = "/".join(str(p) for p in error.absolute_path)
    return f"at '/{where}': {message}" if where else message


def definition_text(raw: Any) -> str | None:
    try:
        return json.dumps(raw, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


def compile_schema(
    schema: Any, where: str, limits: ToolLimits, *, require_object: bool
) -> Validator:
    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(f"{where} must be a JSON Schema object")
    text = definition_text(schema)
    if text is None:
        raise ToolDefinitionError(f"{where} is not JSON")
    if len(text) > limits.max_schema_bytes:
        raise ToolDefinitionError(
            f"{where} is {len(text)} bytes, over the limit of {limits.max_schema_bytes}"
        )
    found = _walk(schema, limits.max_schema_depth)
    if found.depth > limits.max_schema_depth:
        raise ToolDefinitionError(
            f"{where} nests {found.depth} levels deep, over the limit of {limits.max_schema_depth}"
        )
    for key, ref in found.refs:
        if not ref.startswith("#"):
            raise ToolDefinitionError(
                f"{where} has {key} {echo(ref)}: only local references (#...) are allowed, "
                "remote schemas are never fetched",
                code=ErrorCode.NETWORK_REF,
            )
    if require_object and schema.get("type") != "object":
        raise ToolDefinitionError(f'{where} must have "type": "object" at the top level')
    dialect = schema.get("$schema", _DRAFT_2020_12)
    if dialect not in (_DRAFT_2020_12, _DRAFT_2020_12 + "#"):
        raise ToolDefinitionError(
            f"{where} declares $schema {echo(dialect)}: only Draft 2020-12 is supported"
        )
    try:
        _META.validate(schema)
    except jsonschema_rs.ValidationError as exc:
        path = "/".join(str(p) for p in exc.instance_path)
        message = exc.message if len(exc.message) <= 300 else exc.message[:300] + "..."
        detail = f"at '/{path}': {message}" if path else message
        raise ToolDefinitionError(
            f"{where} is not a valid Draft 2020-12 schema: {detail}"
        ) from None
    for pattern in found.patterns:
        try:
            regex.compile_pattern(pattern)
        except regex.PatternError as exc:
            raise ToolDefinitionError(
                f"{where} has pattern {echo(pattern)}, which the bridge cannot run in linear "
                f"time ({exc}); backreferences and lookaround are not supported"
            ) from None
    if found.unevaluated and found.pattern_properties:
        raise ToolDefinitionError(
            f"{where} combines unevaluatedProperties with patternProperties, which the bridge "
            "does not support; use additionalProperties instead"
        )
    validator: Validator = _Validator(schema, registry=_OFFLINE_REGISTRY)
    return validator


def echo(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= _MAX_ECHO else shown[:_MAX_ECHO] + "..."


@dataclass(slots=True)
class _Found:
    depth: int = 0
    refs: list[tuple[str, str]] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    pattern_properties: bool = False
    unevaluated: bool = False


def _walk(schema: Mapping[str, Any], max_depth: int) -> _Found:
    """One pass over the schema for what registration refuses; stops early when too deep.

    Depth counts the objects and arrays on the deepest path. A loop, not recursion: the schema
    came from a client and its nesting is whatever the JSON parser allowed.
    """
    found = _Found()
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, Mapping):
            children: Iterable[Any] = node.values()
            for key in _LOCAL_REF_KEYS:
                ref = node.get(key)
                if isinstance(ref, str):
                    found.refs.append((key, ref))
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                found.patterns.append(pattern)
            named = node.get("patternProperties")
            if isinstance(named, Mapping):
                found.pattern_properties = True
                found.patterns.extend(str(p) for p in named)
            if "unevaluatedProperties" in node:
                found.unevaluated = True
        elif isinstance(node, list):
            children = node
        else:
            continue
        found.depth = max(found.depth, level + 1)
        if found.depth > max_depth:
            return found
        stack.extend((child, level + 1) for child in children)
    return found
