"""Models: the contract the agent loop streams from, the offline model, the OpenAI providers.

The OpenAI providers are the only modules that import `openai`; they load on first use.
"""

from bridge.models.base import Model, ModelError, ModelEvent, TextDelta, ToolCallEvent, UsageEvent

__all__ = ["Model", "ModelError", "ModelEvent", "TextDelta", "ToolCallEvent", "UsageEvent"]
