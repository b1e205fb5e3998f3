"""Helpers for the broken-stream tests: a quick retry policy, and what the client should show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from bridge.models.base import ModelEvent
from bridge.models.retry import StepRetryPolicy

# Real backoff shapes, scaled down to milliseconds so that a test never waits on a clock.
QUICK_RETRY = StepRetryPolicy(base_delay_s=0.001, max_delay_s=0.004)

DOCUMENTED_MODEL_CODES = {
    "model_error",
    "model_auth",
    "model_permission",
    "model_rate_limited",
    "model_unavailable",
    "model_timeout",
    "model_connection",
    "model_bad_request",
    "model_truncated",
    "model_bad_response",
    "model_incomplete",
}


def final_text(events: list[dict[str, Any]]) -> str:
    """The run's text as a client should show it: `step_retry` voids what the current step
    streamed so far; a step is over once its tool results arrive."""
    kept: list[str] = []
    current: list[str] = []
    for event in events:
        if event["type"] == "token":
            current.append(event["content"])
        elif event["type"] == "step_retry":
            current = []
        elif event["type"] == "tool_result":
            kept += current
            current = []
    return "".join(kept + current)


def error_codes(events: list[dict[str, Any]]) -> list[str]:
    return [e["code"] for e in events if e["type"] == "error"]


def retries(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == "step_retry"]


def assistant_texts(request_body: dict[str, Any], api: str) -> list[str]:
    """The assistant's text of every turn in a request the model was sent."""
    if api == "chat":
        return [m["content"] or "" for m in request_body["messages"] if m["role"] == "assistant"]
    return [
        item["content"]
        for item in request_body["input"]
        if item.get("type") == "message" and item["role"] == "assistant"
    ]


async def anext_all(stream: AsyncIterator[ModelEvent]) -> list[ModelEvent]:
    return [event async for event in stream]
