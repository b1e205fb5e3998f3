"""Python client for agent-bridge."""

from bridge_client.client import (
    BridgeClient,
    ConversationReset,
    RunResult,
    ToolContext,
    ToolDenied,
    backoff_delay,
)

__all__ = [
    "BridgeClient",
    "ConversationReset",
    "RunResult",
    "ToolContext",
    "ToolDenied",
    "backoff_delay",
]
