"""Tool definitions: checked once at registration, validators compiled once, used on every call.

Three checks happen here: the definition against Draft 2020-12 and the bridge's limits, the
model's arguments before dispatch, and the tool's result after it returns.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema_rs
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from referencing import Registry

from bridge import regex
from bridge.errors import ErrorCode, ToolDefinitionError
from bridge.fastschema import Check, compile_check
from bridge.limits import ToolLimits

__all__ = [
    "Rejection",
    "SchemaBudget",
    "ToolSource",
    "ToolSpec",
    "parse_tool",
    "register_many",
]

ToolSource = Literal["client", "server"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LOCAL_REF_KEYS = ("$ref", "$dynamicRef")
# Hints are policy, not decoration: `destructive` asks a person first, `untrusted_content`
# fences the result as data and taints the run, `read_only`/`idempotent` allow a re-run.
_HINTS = ("interactive", "read_only", "destructive", "idempotent", "untrusted_content")
_KNOWN_KEYS = frozenset(
    {"name", "description", "parameters", "output_schema", "timeout_ms", *_HINTS}
)


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


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None = None
    timeout_ms: int | None = None
    interactive: bool = False
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    untrusted_content: bool = False
    source: ToolSource = "client"
    _args_validator: Validator = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    _result_validator: Validator | None = field(repr=False, compare=False, default=None)
    # Fast accept-checks for plain schemas; jsonschema still decides every rejection.
    _args_check: Check | None = field(repr=False, compare=False, default=None)
    _result_check: Check | None = field(repr=False, compare=False, default=None)
    _budget_s: float = field(repr=False, compare=False, default=0.025)

    def validate_arguments(self, arguments: Any) -> str | None:
        """Return a message the model can act on, or None when the arguments are valid."""
        if self._args_check is not None and self._args_check(arguments):
            return None
        return _first_error(self._args_validator, arguments, self._budget_s)

    def validate_result(self, result: Any) -> str | None:
        if self._result_validator is None:
            return None
        if self._result_check is not None and self._result_check(result):
            return None
        return _first_error(self._result_validator, result, self._budget_s)

    def effective_timeout_ms(self, limits: ToolLimits) -> int:
        """The call's timeout: a person's clock for interactive tools, a machine's otherwise."""
        if self.interactive:
            return self.timeout_ms or limits.human_timeout_ms
        return min(self.timeout_ms or limits.default_timeout_ms, limits.max_timeout_ms)

    def to_wire(self) -> dict[str, Any]:
        """The definition as a client would send it (and as a provider's tool list needs it)."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
        }
        if self.output_schema is not None:
            out["output_schema"] = dict(self.output_schema)
        if self.timeout_ms is not None:
            out["timeout_ms"] = self.timeout_ms
        for hint in _HINTS:
            if getattr(self, hint):
                out[hint] = True
        return out


def _first_error(validator: Validator, instance: Any, budget_s: float) -> str | None:
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


# The sessions of one app register the same definitions, so each is checked once. The key keeps
# the definition's key order, which decides the order of validation errors. Entries are bounded
# in number and in definition text, since unique large definitions would otherwise pin memory.
_PARSED_CACHE_SIZE = 1024


class _SpecCache:
    def __init__(self) -> None:
        self._specs: OrderedDict[tuple[ToolLimits, str, str], ToolSpec] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple[ToolLimits, str, str]) -> ToolSpec | None:
        spec = self._specs.get(key)
        if spec is not None:
            self._specs.move_to_end(key)
        return spec

    def put(self, key: tuple[ToolLimits, str, str], spec: ToolSpec) -> None:
        budget = key[0].definition_cache_bytes
        if len(key[2]) > budget or key in self._specs:
            return
        self._specs[key] = spec
        self._bytes += len(key[2])
        while self._bytes > budget or len(self._specs) > _PARSED_CACHE_SIZE:
            old, _ = self._specs.popitem(last=False)
            self._bytes -= len(old[2])


_parsed = _SpecCache()


def _definition_text(raw: Any) -> str | None:
    try:
        return json.dumps(raw, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None


def parse_tool(raw: Any, limits: ToolLimits, *, source: ToolSource = "client") -> ToolSpec:
    """Check one definition and compile its validators, or raise `ToolDefinitionError`."""
    return _parse_cached(raw, _definition_text(raw), limits, source)


def _parse_cached(raw: Any, text: str | None, limits: ToolLimits, source: ToolSource) -> ToolSpec:
    if text is None:
        return _parse_tool(raw, limits, source=source)
    key = (limits, source, text)
    spec = _parsed.get(key)
    if spec is None:
        spec = _parse_tool(raw, limits, source=source)
        _parsed.put(key, spec)
    return spec


def _parse_tool(raw: Any, limits: ToolLimits, *, source: ToolSource) -> ToolSpec:
    if not isinstance(raw, Mapping):
        raise ToolDefinitionError("a tool definition must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ToolDefinitionError("name must be 1-64 characters of A-Z a-z 0-9 _ -")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        shown = ", ".join(unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise ToolDefinitionError(f"unknown fields: {_echo(shown)[1:-1]}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ToolDefinitionError("description must be a string")
    if len(description) > limits.max_description_chars:
        raise ToolDefinitionError(
            f"description is longer than {limits.max_description_chars} characters"
        )
    parameters = raw.get("parameters", {"type": "object", "properties": {}})
    args_validator = _compile(parameters, "parameters", limits, require_object=True)
    output_schema = raw.get("output_schema")
    result_validator = (
        None
        if output_schema is None
        else _compile(output_schema, "output_schema", limits, require_object=False)
    )
    timeout_ms = raw.get("timeout_ms")
    if timeout_ms is not None and (
        isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0
    ):
        raise ToolDefinitionError("timeout_ms must be a positive integer")
    if timeout_ms is not None and timeout_ms > limits.max_timeout_ms:
        timeout_ms = limits.max_timeout_ms
    hints = {}
    for hint in _HINTS:
        value = raw.get(hint, False)
        if not isinstance(value, bool):
            raise ToolDefinitionError(f"{hint} must be a boolean")
        hints[hint] = value
    if hints["read_only"] and hints["destructive"]:
        raise ToolDefinitionError("a tool cannot be both read_only and destructive")
    return ToolSpec(
        name=name,
        description=description,
        parameters=parameters,
        output_schema=output_schema,
        timeout_ms=timeout_ms,
        source=source,
        _args_validator=args_validator,
        _result_validator=result_validator,
        _args_check=compile_check(parameters),
        _result_check=None if output_schema is None else compile_check(output_schema),
        _budget_s=limits.max_validation_ms / 1000,
        **hints,
    )


def _compile(schema: Any, where: str, limits: ToolLimits, *, require_object: bool) -> Validator:
    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(f"{where} must be a JSON Schema object")
    text = _definition_text(schema)
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
                f"{where} has {key} {_echo(ref)}: only local references (#...) are allowed, "
                "remote schemas are never fetched",
                code=ErrorCode.NETWORK_REF,
            )
    if require_object and schema.get("type") != "object":
        raise ToolDefinitionError(f'{where} must have "type": "object" at the top level')
    dialect = schema.get("$schema", _DRAFT_2020_12)
    if dialect not in (_DRAFT_2020_12, _DRAFT_2020_12 + "#"):
        raise ToolDefinitionError(
            f"{where} declares $schema {_echo(dialect)}: only Draft 2020-12 is supported"
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
                f"{where} has pattern {_echo(pattern)}, which the bridge cannot run in linear "
                f"time ({exc}); backreferences and lookaround are not supported"
            ) from None
    if found.unevaluated and found.pattern_properties:
        raise ToolDefinitionError(
            f"{where} combines unevaluatedProperties with patternProperties, which the bridge "
            "does not support; use additionalProperties instead"
        )
    validator: Validator = _Validator(schema, registry=_OFFLINE_REGISTRY)
    return validator


def _echo(value: Any) -> str:
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


@dataclass(frozen=True, slots=True)
class Rejection:
    name: str | None
    code: str
    reason: str


def register_many(
    raws: Iterable[Any],
    current: Mapping[str, ToolSpec],
    limits: ToolLimits,
    *,
    reserved: Iterable[str] = (),
    budget: SchemaBudget | None = None,
) -> tuple[list[ToolSpec], list[Rejection]]:
    """Check a batch against the tools already present; each definition stands or falls alone.

    Checking is bounded before it starts: a batch longer than `max_tools_per_message` is
    refused whole in one rejection, and definitions past the message's or the session's byte
    budget are refused without being checked.
    """
    batch = raws if isinstance(raws, list) else list(raws)
    if len(batch) > limits.max_tools_per_message:
        return [], [
            Rejection(
                None,
                ErrorCode.TOO_MANY_TOOLS.value,
                f"a batch of {len(batch)} definitions is longer than the limit of "
                f"{limits.max_tools_per_message}; none was registered",
            )
        ]
    taken = set(current) | set(reserved)
    count = len(current)
    spent = 0
    accepted: list[ToolSpec] = []
    rejected: list[Rejection] = []
    for raw in batch:
        shown = _shown_name(raw)
        text = _definition_text(raw)
        size = 0 if text is None else len(text)
        spent += size
        if spent > limits.max_registration_bytes:
            rejected.append(
                Rejection(
                    shown,
                    ErrorCode.INVALID_TOOL.value,
                    f"the definitions of this message pass {limits.max_registration_bytes} "
                    "bytes; send the rest in another message",
                )
            )
            continue
        if budget is not None and not budget.take(size):
            rejected.append(
                Rejection(
                    shown,
                    ErrorCode.INVALID_TOOL.value,
                    f"this session sent more than {limits.registration_bytes_per_minute} bytes "
                    "of definitions in the last minute; try again later",
                )
            )
            continue
        try:
            spec = _parse_cached(raw, text, limits, "client")
        except ToolDefinitionError as exc:
            rejected.append(Rejection(shown, exc.code.value, exc.message))
            continue
        if spec.name in taken:
            rejected.append(
                Rejection(
                    spec.name, ErrorCode.DUPLICATE_TOOL.value, f"tool {spec.name!r} already exists"
                )
            )
            continue
        if count >= limits.max_tools:
            rejected.append(
                Rejection(
                    spec.name,
                    ErrorCode.TOO_MANY_TOOLS.value,
                    f"a session may register at most {limits.max_tools} tools",
                )
            )
            continue
        taken.add(spec.name)
        count += 1
        accepted.append(spec)
    return accepted, rejected


def _shown_name(raw: Any) -> str | None:
    """The name to report a rejection under, never a long echo."""
    name = raw.get("name") if isinstance(raw, Mapping) else None
    if not isinstance(name, str):
        return None
    return name if len(name) <= 64 else name[:64] + "..."


class SchemaBudget:
    """Definition bytes one session may have checked: a token bucket refilled over a minute."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._capacity = float(per_minute)
        self._tokens = float(per_minute)
        self._rate = per_minute / 60.0
        self._clock = clock
        self._at = clock()

    def take(self, size: int) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if size > self._tokens:
            return False
        self._tokens -= size
        return True
