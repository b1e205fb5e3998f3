"""Tool definitions: checked once at registration, validators compiled once, used on every call.

Three checks happen here: the definition against Draft 2020-12 and the bridge's limits, the
model's arguments before dispatch, and the tool's result after it returns.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from referencing import Registry

from bridge.errors import ErrorCode, ToolDefinitionError
from bridge.fastschema import Check, compile_check
from bridge.limits import ToolLimits

__all__ = [
    "Rejection",
    "ToolSource",
    "ToolSpec",
    "parse_tool",
    "register_many",
]

ToolSource = Literal["client", "server"]

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_LOCAL_REF_KEYS = ("$ref", "$dynamicRef")
_HINTS = ("interactive", "read_only", "destructive", "idempotent")
_KNOWN_KEYS = frozenset(
    {"name", "description", "parameters", "output_schema", "timeout_ms", *_HINTS}
)


# Without an explicit registry, jsonschema falls back to one that fetches remote refs over the
# network; an empty registry's retrieval always fails. Non-local refs are refused at registration
# too, so this is the belt to that brace.
_OFFLINE_REGISTRY: Registry[Any] = Registry()


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
    source: ToolSource = "client"
    _args_validator: Draft202012Validator = field(repr=False, compare=False, default=None)  # type: ignore[assignment]
    _result_validator: Draft202012Validator | None = field(repr=False, compare=False, default=None)
    # Fast accept-checks for plain schemas; jsonschema still decides every rejection.
    _args_check: Check | None = field(repr=False, compare=False, default=None)
    _result_check: Check | None = field(repr=False, compare=False, default=None)

    def validate_arguments(self, arguments: Any) -> str | None:
        """Return a message the model can act on, or None when the arguments are valid."""
        if self._args_check is not None and self._args_check(arguments):
            return None
        return _first_error(self._args_validator, arguments)

    def validate_result(self, result: Any) -> str | None:
        if self._result_validator is None:
            return None
        if self._result_check is not None and self._result_check(result):
            return None
        return _first_error(self._result_validator, result)

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


def _first_error(validator: Draft202012Validator, instance: Any) -> str | None:
    error = next(iter(validator.iter_errors(instance)), None)
    if error is None:
        return None
    return _format_validation_error(error)


def _format_validation_error(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path)
    return f"at '/{where}': {error.message}" if where else error.message


# Checking a definition against the meta-schema costs about 0.7 ms a tool, most of the cost of
# a hello; the sessions of one app register the same definitions, so each is checked once.
# The key keeps the definition's key order, which decides the order of validation errors.
_PARSED_CACHE_SIZE = 1024
_parsed: OrderedDict[tuple[ToolLimits, str, str], ToolSpec] = OrderedDict()


def parse_tool(raw: Any, limits: ToolLimits, *, source: ToolSource = "client") -> ToolSpec:
    """Check one definition and compile its validators, or raise `ToolDefinitionError`."""
    try:
        key = (limits, source, json.dumps(raw, separators=(",", ":")))
    except (TypeError, ValueError):
        return _parse_tool(raw, limits, source=source)
    spec = _parsed.get(key)
    if spec is not None:
        _parsed.move_to_end(key)
        return spec
    spec = _parse_tool(raw, limits, source=source)
    _parsed[key] = spec
    if len(_parsed) > _PARSED_CACHE_SIZE:
        _parsed.popitem(last=False)
    return spec


def _parse_tool(raw: Any, limits: ToolLimits, *, source: ToolSource) -> ToolSpec:
    if not isinstance(raw, Mapping):
        raise ToolDefinitionError("a tool definition must be a JSON object")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ToolDefinitionError("name must be 1-64 characters of A-Z a-z 0-9 _ -")
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise ToolDefinitionError(f"unknown fields: {', '.join(unknown)}")
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
        **hints,
    )


def _compile(
    schema: Any, where: str, limits: ToolLimits, *, require_object: bool
) -> Draft202012Validator:
    if not isinstance(schema, Mapping):
        raise ToolDefinitionError(f"{where} must be a JSON Schema object")
    size = len(json.dumps(schema, separators=(",", ":")))
    if size > limits.max_schema_bytes:
        raise ToolDefinitionError(
            f"{where} is {size} bytes, over the limit of {limits.max_schema_bytes}"
        )
    depth = _depth(schema)
    if depth > limits.max_schema_depth:
        raise ToolDefinitionError(
            f"{where} nests {depth} levels deep, over the limit of {limits.max_schema_depth}"
        )
    _refuse_non_local_refs(schema, where)
    if require_object and schema.get("type") != "object":
        raise ToolDefinitionError(f'{where} must have "type": "object" at the top level')
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ToolDefinitionError(
            f"{where} is not a valid Draft 2020-12 schema: {_format_schema_error(exc)}"
        ) from None
    return Draft202012Validator(schema, registry=_OFFLINE_REGISTRY)


def _format_schema_error(error: SchemaError) -> str:
    where = "/".join(str(p) for p in error.absolute_path)
    return f"at '/{where}': {error.message}" if where else error.message


def _depth(node: Any, level: int = 0) -> int:
    if isinstance(node, Mapping):
        return max((_depth(v, level + 1) for v in node.values()), default=level + 1)
    if isinstance(node, list):
        return max((_depth(v, level + 1) for v in node), default=level + 1)
    return level


def _refuse_non_local_refs(node: Any, where: str) -> None:
    if isinstance(node, Mapping):
        for key in _LOCAL_REF_KEYS:
            ref = node.get(key)
            if isinstance(ref, str) and not ref.startswith("#"):
                raise ToolDefinitionError(
                    f"{where} has {key} {ref!r}: only local references (#...) are allowed, "
                    "remote schemas are never fetched",
                    code=ErrorCode.NETWORK_REF,
                )
        for value in node.values():
            _refuse_non_local_refs(value, where)
    elif isinstance(node, list):
        for value in node:
            _refuse_non_local_refs(value, where)


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
) -> tuple[list[ToolSpec], list[Rejection]]:
    """Check a batch against the tools already present; each definition stands or falls alone."""
    taken = set(current) | set(reserved)
    count = len(current)
    accepted: list[ToolSpec] = []
    rejected: list[Rejection] = []
    for raw in raws:
        name = raw.get("name") if isinstance(raw, Mapping) else None
        shown = name if isinstance(name, str) else None
        try:
            spec = parse_tool(raw, limits)
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
