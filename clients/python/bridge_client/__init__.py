"""Python client for agent-bridge."""

from bridge_client.client import BridgeClient, RunResult, ToolContext, ToolDenied

__all__ = ["BridgeClient", "RunResult", "ToolContext", "ToolDenied"]
