"""The providers on their own, through the real `openai` client: the model contract's events,
conversation mapping, and closing the HTTP stream when the consumer walks away."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk
from openai.types.chat.chat_completion_chunk import (
    Choice,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
)

from bridge.calls import TerminalStatus
from bridge.conversation import AssistantTurn, ToolCall, ToolResult, Turn, UserTurn, result_text
from bridge.errors import ErrorCode
from bridge.limits import ToolLimits
from bridge.models.base import ModelError, TextDelta, ToolCallEvent, UsageEvent
from bridge.models.openai_chat import _events
from bridge.testing import Fail, OpenAIServer, Reply, tool_call
from bridge.toolspec import parse_tool
from tests.openai.openai_support import APIS, BOUND_S, provider, sent_calls, sent_results

WEATHER = parse_tool(
    {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "minLength": 1}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
    ToolLimits(),
)


@pytest.mark.parametrize("api", APIS)
async def test_events_follow_the_model_contract(api: str) -> None:
    arguments = {"city": "Zürich", "note": 'quote " and brace }'}
    script = Reply(
        ["Checking ", "both."],
        calls=[
            tool_call("get_weather", arguments, id="call_1", fragment_chars=1),
            tool_call("get_weather", '{"city": ', id="call_2"),
        ],
        usage=(40, 9),
    )
    async with OpenAIServer(script) as llm:
        model = provider(api, llm)
        async with asyncio.timeout(BOUND_S):
            events = [e async for e in model.stream([UserTurn("weather?")], [WEATHER])]
    assert events == [
        TextDelta("Checking "),
        TextDelta("both."),
        UsageEvent(40, 9, 49),
        ToolCallEvent("call_1", "get_weather", json.dumps(arguments)),
        ToolCallEvent("call_2", "get_weather", '{"city": '),
    ]


async def test_chat_fragments_of_parallel_calls_are_joined_by_index() -> None:
    script = Reply(
        calls=[
            tool_call("a", {"x": "first call"}, id="call_a", fragment_chars=2),
            tool_call("b", {"y": "second call"}, id="call_b", fragment_chars=3),
        ],
        interleave_calls=True,
    )
    async with OpenAIServer(script) as llm:
        model = provider("chat", llm)
        async with asyncio.timeout(BOUND_S):
            calls = [
                e async for e in model.stream([UserTurn("go")], []) if isinstance(e, ToolCallEvent)
            ]
    assert calls == [
        ToolCallEvent("call_a", "a", '{"x": "first call"}'),
        ToolCallEvent("call_b", "b", '{"y": "second call"}'),
    ]
    assert "tools" not in llm.requests[0].body, "an empty tool list is left out"


@pytest.mark.parametrize("api", APIS)
async def test_closing_the_stream_at_a_yield_closes_the_http_response(api: str) -> None:
    script = Reply(["one ", "two ", "three"], end="stall")
    async with OpenAIServer(script) as llm:
        stream = provider(api, llm).stream([UserTurn("count")], [])
        async with asyncio.timeout(BOUND_S):
            assert await anext(stream) == TextDelta("one ")
        # The consumer stops while the generator is suspended at a yield (the loop does this
        # when a run is stopped between two events): the server must see the hang-up.
        await stream.aclose()  # type: ignore[attr-defined]
        async with asyncio.timeout(1):
            await llm.disconnected.wait()
    assert llm.disconnects == 1


@pytest.mark.parametrize("api", APIS)
async def test_the_conversation_is_mapped_with_every_result_paired(api: str) -> None:
    conversation: list[Turn] = [
        UserTurn("weather in Paris and Rome?"),
        AssistantTurn(
            "",
            (
                ToolCall("call_p", "get_weather", '{"city": "Paris"}'),
                ToolCall("call_r", "get_weather", '{"city": "Rome"'),
            ),
        ),
        ToolResult("call_p", "get_weather", TerminalStatus.OK, "sunny"),
        ToolResult(
            "call_r",
            "get_weather",
            TerminalStatus.INVALID_ARGUMENTS,
            result_text(TerminalStatus.INVALID_ARGUMENTS, detail="not valid JSON"),
        ),
        AssistantTurn("Paris is sunny."),
        UserTurn("thanks"),
    ]
    async with OpenAIServer(Reply("You're welcome.")) as llm:
        model = provider(api, llm, instructions="Be brief.")
        async with asyncio.timeout(BOUND_S):
            text = "".join(
                [
                    e.text
                    async for e in model.stream(conversation, [WEATHER])
                    if isinstance(e, TextDelta)
                ]
            )
    assert text == "You're welcome."
    [request] = llm.requests
    assert sent_calls(request) == [
        ("call_p", "get_weather", '{"city": "Paris"}'),
        ("call_r", "get_weather", '{"city": "Rome"'),
    ]
    results = sent_results(request)
    assert results["call_p"] == ["sunny"]
    assert results["call_r"][0].startswith("[invalid_arguments]")
    if api == "chat":
        roles = [m["role"] for m in request.body["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "tool", "assistant", "user"]
        assert request.body["messages"][2]["content"] is None
        assert request.body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Weather for a city.",
                    "parameters": dict(WEATHER.parameters),
                },
            }
        ]
    else:
        kinds = [item.get("type") for item in request.body["input"]]
        assert kinds == [
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output",
            "message",
            "message",
        ]
        assert request.body["instructions"] == "Be brief."
        assert request.body["tools"] == [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": dict(WEATHER.parameters),
                "strict": False,
            }
        ]


@pytest.mark.parametrize("api", APIS)
async def test_errors_surface_as_model_errors_with_codes(api: str) -> None:
    async with OpenAIServer(Fail(401, "bad key"), Reply(["x"], end="drop")) as llm:
        model = provider(api, llm)
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(ModelError) as auth:
                _ = [e async for e in model.stream([UserTurn("hi")], [])]
            with pytest.raises(ModelError) as dropped:
                _ = [e async for e in model.stream([UserTurn("hi")], [])]
    assert auth.value.code is ErrorCode.MODEL_AUTH
    assert dropped.value.code is ErrorCode.MODEL_CONNECTION


@pytest.mark.parametrize("api", APIS)
async def test_a_server_that_is_not_there_is_model_connection(api: str) -> None:
    async with OpenAIServer() as llm:
        model = provider(api, llm, max_retries=0)
    # The server has stopped listening: its port refuses connections.
    async with asyncio.timeout(BOUND_S):
        with pytest.raises(ModelError) as refused:
            _ = [e async for e in model.stream([UserTurn("hi")], [])]
    assert refused.value.code is ErrorCode.MODEL_CONNECTION


def test_chat_calls_from_servers_that_leave_out_the_index_are_told_apart() -> None:
    # The model types are built the way the client builds them from a lenient server's JSON
    # (no validation), so the missing field is really missing.
    def chunk(*deltas: dict[str, Any]) -> ChatCompletionChunk:
        return ChatCompletionChunk.construct(
            id="c",
            object="chat.completion.chunk",
            created=0,
            model="m",
            choices=[
                Choice.construct(
                    index=0,
                    delta=ChoiceDelta.construct(
                        tool_calls=[ChoiceDeltaToolCall.construct(**d) for d in deltas]
                    ),
                )
            ],
        )

    def fn(**fields: Any) -> ChoiceDeltaToolCallFunction:
        return ChoiceDeltaToolCallFunction.construct(**fields)

    calls: dict[int, Any] = {}
    _events(chunk({"id": "x", "function": fn(name="a", arguments='{"k"')}), calls)
    _events(chunk({"function": fn(arguments=": 1}")}), calls)
    _events(chunk({"id": "y", "function": fn(name="b", arguments="{}")}), calls)
    assert [(c.id, c.name, c.arguments) for c in calls.values()] == [
        ("x", "a", '{"k": 1}'),
        ("y", "b", "{}"),
    ]


async def test_chat_without_usage_sends_no_stream_options() -> None:
    # For compatible servers that refuse `stream_options`: the request must not carry it, and a
    # stream without a usage chunk is still a complete step.
    async with OpenAIServer(Reply(["plain"])) as llm:
        model = provider("chat", llm, include_usage=False)
        async with asyncio.timeout(BOUND_S):
            events = [e async for e in model.stream([UserTurn("hi")], [])]
    assert "stream_options" not in llm.requests[0].body
    assert events == [TextDelta("plain")]
