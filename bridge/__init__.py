"""agent-bridge: a server-side LLM agent calling tools that live in the user's frontend.

The names below load on first use, so `import bridge.protocol` (the sans-I/O core, which a
client or a worker may want alone) does not pull in FastAPI, Starlette, uvicorn or openai.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "PROTOCOL_VERSION",
    "Bridge",
    "BridgeError",
    "BridgeSettings",
    "CloseCode",
    "ErrorCode",
    "MemoryStore",
    "Model",
    "ModelError",
    "ModelEvent",
    "ServerTools",
    "SessionStore",
    "TerminalStatus",
    "TextDelta",
    "ToolCallEvent",
    "UsageEvent",
    "create_app",
]
__version__ = "0.1.0"

_HOMES = {
    "PROTOCOL_VERSION": "bridge.protocol",
    "Bridge": "bridge.server.app",
    "BridgeError": "bridge.errors",
    "BridgeSettings": "bridge.server.settings",
    "CloseCode": "bridge.errors",
    "ErrorCode": "bridge.errors",
    "MemoryStore": "bridge.store",
    "Model": "bridge.models.base",
    "ModelError": "bridge.errors",
    "ModelEvent": "bridge.models.base",
    "ServerTools": "bridge.agent.server_tools",
    "SessionStore": "bridge.store",
    "TerminalStatus": "bridge.calls",
    "TextDelta": "bridge.models.base",
    "ToolCallEvent": "bridge.models.base",
    "UsageEvent": "bridge.models.base",
    "create_app": "bridge.server.app",
}

if TYPE_CHECKING:
    from bridge.agent.server_tools import ServerTools
    from bridge.calls import TerminalStatus
    from bridge.errors import BridgeError, CloseCode, ErrorCode, ModelError
    from bridge.models.base import (
        Model,
        ModelEvent,
        TextDelta,
        ToolCallEvent,
        UsageEvent,
    )
    from bridge.protocol import PROTOCOL_VERSION
    from bridge.server.app import Bridge, create_app
    from bridge.server.settings import BridgeSettings
    from bridge.store import MemoryStore, SessionStore


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
