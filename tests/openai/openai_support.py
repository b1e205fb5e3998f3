"""Helpers for the OpenAI provider tests: one model per API, and readers of what was sent."""

from __future__ import annotations

from typing import Any

from bridge.models.openai_chat import OpenAIChatModel
from bridge.models.openai_responses import OpenAIResponsesModel
from bridge.testing import OpenAIServer, RecordedRequest

APIS = ["chat", "responses"]
API_KEY = "sk-test-4f9a1c2b7e6d5a8f0b3c"
BOUND_S = 10


def provider(
    api: str, server: OpenAIServer, **options: Any
) -> OpenAIChatModel | OpenAIResponsesModel:
    options.setdefault("api_key", API_KEY)
    options.setdefault("max_retries", 1)
    options.setdefault("timeout_s", 5.0)
    kind = OpenAIChatModel if api == "chat" else OpenAIResponsesModel
    return kind("test-model", base_url=server.base_url, **options)


def sent_calls(request: RecordedRequest) -> list[tuple[str, str, str]]:
    """(call id, name, arguments) of every tool call in the conversation the model was sent."""
    if request.api == "chat":
        return [
            (c["id"], c["function"]["name"], c["function"]["arguments"])
            for m in request.body["messages"]
            if m["role"] == "assistant"
            for c in m.get("tool_calls") or ()
        ]
    return [
        (item["call_id"], item["name"], item["arguments"])
        for item in request.body["input"]
        if item.get("type") == "function_call"
    ]


def sent_results(request: RecordedRequest) -> dict[str, list[str]]:
    """Result texts by the call id they answer, in the order they were sent."""
    found: dict[str, list[str]] = {}
    if request.api == "chat":
        for m in request.body["messages"]:
            if m["role"] == "tool":
                found.setdefault(m["tool_call_id"], []).append(m["content"])
    else:
        for item in request.body["input"]:
            if item.get("type") == "function_call_output":
                found.setdefault(item["call_id"], []).append(item["output"])
    return found


def sent_user_texts(request: RecordedRequest) -> list[str]:
    if request.api == "chat":
        return [m["content"] for m in request.body["messages"] if m["role"] == "user"]
    return [
        item["content"]
        for item in request.body["input"]
        if item.get("type") == "message" and item["role"] == "user"
    ]


def sent_tools(request: RecordedRequest) -> dict[str, dict[str, Any]]:
    """The tools offered, by name, in a provider-neutral shape for comparison."""
    tools = request.body.get("tools") or []
    if request.api == "chat":
        return {
            t["function"]["name"]: {
                "description": t["function"]["description"],
                "parameters": t["function"]["parameters"],
            }
            for t in tools
        }
    return {
        t["name"]: {"description": t["description"], "parameters": t["parameters"]} for t in tools
    }


def assert_every_call_answered(request: RecordedRequest) -> None:
    """OpenAI rejects a request with a call that has no result, or with a result twice."""
    results = sent_results(request)
    for call_id, _name, _arguments in sent_calls(request):
        assert len(results.get(call_id, [])) == 1, f"call {call_id} has {results.get(call_id)}"
    assert set(results) == {call_id for call_id, _n, _a in sent_calls(request)}
