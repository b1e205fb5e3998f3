"""JSON Schema of a handler's parameters, built by pydantic from its type hints."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, get_type_hints

from pydantic import ConfigDict, create_model

__all__ = ["context_parameter", "parameters_schema"]


def context_parameter(func: Callable[..., Any], context_type: type) -> str | None:
    """The name of the parameter that receives the call's context, if the handler wants one."""
    hints = get_type_hints(func)
    for name in inspect.signature(func).parameters:
        if hints.get(name) is context_type:
            return name
    return None


def parameters_schema(func: Callable[..., Any], skip: str | None = None) -> dict[str, Any]:
    hints = get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.name == skip:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{func.__name__}: a tool handler takes named parameters only")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints.get(param.name, Any), default)
    model = create_model(
        f"{func.__name__}_parameters", __config__=ConfigDict(extra="forbid"), **fields
    )
    schema: dict[str, Any] = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema
