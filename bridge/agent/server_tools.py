"""Server-side tools: plain Python functions, sync or async, whose schema comes from type hints.

They are checked by the same toolspec rules as client tools, so the model sees one kind of tool
and every call goes through one validation path.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, get_type_hints, overload

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from bridge.limits import ToolLimits
from bridge.toolspec import ToolSpec, parse_tool

__all__ = ["ServerTools"]

F = TypeVar("F", bound=Callable[..., Any])
_ANY = TypeAdapter(Any)


class ServerTools:
    """A set of in-process tools; `@tools.tool` registers a function."""

    def __init__(self, limits: ToolLimits | None = None) -> None:
        self._limits = limits or ToolLimits()
        self._specs: dict[str, ToolSpec] = {}
        self._funcs: dict[str, Callable[..., Any]] = {}

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_ms: int | None = None,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        untrusted_content: bool = False,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_ms: int | None = None,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        untrusted_content: bool = False,
    ) -> F | Callable[[F], F]:
        def register(fn: F) -> F:
            definition: dict[str, Any] = {
                "name": name or fn.__name__,
                "description": description or inspect.getdoc(fn) or "",
                "parameters": schema_from_signature(fn),
                "read_only": read_only,
                "destructive": destructive,
                "idempotent": idempotent,
                "untrusted_content": untrusted_content,
            }
            if timeout_ms is not None:
                definition["timeout_ms"] = timeout_ms
            spec = parse_tool(definition, self._limits, source="server")
            if spec.name in self._specs:
                raise ValueError(f"server tool {spec.name!r} is already registered")
            self._specs[spec.name] = spec
            self._funcs[spec.name] = fn
            return fn

        return register(func) if func is not None else register

    @property
    def specs(self) -> dict[str, ToolSpec]:
        return dict(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    async def invoke(self, name: str, arguments: dict[str, Any]) -> Any:
        """Run the tool; its return value is converted to plain JSON data."""
        func = self._funcs[name]
        if inspect.iscoroutinefunction(func):
            value = await func(**arguments)
        else:
            value = await asyncio.to_thread(func, **arguments)
        return _ANY.dump_python(value, mode="json")


def schema_from_signature(func: Callable[..., Any]) -> dict[str, Any]:
    """The JSON Schema of a function's keyword arguments, built by pydantic from its hints."""
    hints = get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{func.__name__}: *args and **kwargs cannot be described to a model")
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    model: type[BaseModel] = create_model(
        f"{func.__name__}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema
