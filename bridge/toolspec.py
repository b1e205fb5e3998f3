"""Tool definitions: checked once at registration, validators compiled once, used on every call.

Three checks happen here: the definition against Draft 2020-12 and the bridge's limits, the
model's arguments before dispatch, and the tool's result after it returns.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from jsonschema.protocols import Validator

from bridge.errors import ErrorCode, ToolDefinitionError
from bridge.fastschema import Check, compile_check
from bridge.limits import ToolLimits
from bridge.schema_check import compile_schema, definition_text, echo, first_error

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
# Hints are policy, not decoration: `destructive` asks a person first, `untrusted_content`
# fences the result as data and taints the run, `read_only`/`idempotent` allow a re-run.
_HINTS = ("interactive", "read_only", "destructive", "idempotent", "untrusted_content")
_KNOWN_KEYS = frozenset(
    {"name", "description", "parameters", "output_schema", "timeout_ms", *_HINTS}
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
        return first_error(self._args_validator, arguments, self._budget_s)

    def validate_result(self, result: Any) -> str | None:
        if self._result_validator is None:
            return None
        if self._result_check is not None and self._result_check(result):
            return None
        return first_error(self._result_validator, result, self._budget_s)

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


def parse_tool(raw: Any, limits: ToolLimits, *, source: ToolSource = "client") -> ToolSpec:
    """Check one definition and compile its validators, or raise `ToolDefinitionError`."""
    return _parse_cached(raw, definition_text(raw), limits, source)


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
        raise ToolDefinitionError(f"unknown fields: {echo(shown)[1:-1]}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ToolDefinitionError("description must be a string")
    if len(description) > limits.max_description_chars:
        raise ToolDefinitionError(
            f"description is longer than {limits.max_description_chars} characters"
        )
    parameters = raw.get("parameters", {"type": "object", "properties": {}})
    args_validator = compile_schema(parameters, "parameters", limits, require_object=True)
    output_schema = raw.get("output_schema")
    result_validator = (
        None
        if output_schema is None
        else compile_schema(output_schema, "output_schema", limits, require_object=False)
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
        text = definition_text(raw)
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
