"""Python client for agent-bridge."""

from bridge_client.client import (
    Approval,
    ApprovalRequest,
    Approver,
    BridgeClient,
    ConversationReset,
    RunResult,
    ToolContext,
    ToolDenied,
    backoff_delay,
    rate_limited_delay,
)

__all__ = [
    "Approval",
    "ApprovalRequest",
    "Approver",
    "BridgeClient",
    "ConversationReset",
    "RunResult",
    "ToolContext",
    "ToolDenied",
    "backoff_delay",
    "rate_limited_delay",
]
