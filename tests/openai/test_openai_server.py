"""The OpenAI-compatible test server as a user would use it: the real `openai` client reads
its answers, and every request is recorded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from bridge.testing import Fail, OpenAIServer, Reply, tool_call
from tests.openai.openai_support import BOUND_S

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


def client_for(server: OpenAIServer, **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test", base_url=server.base_url, **options)


async def test_non_streamed_chat_completion_with_tool_calls() -> None:
    script = Reply("Calling.", calls=[tool_call("f", {"a": 1}, id="call_f")], usage=(5, 2))
    async with OpenAIServer(script) as server, asyncio.timeout(BOUND_S):
        completion = await client_for(server).chat.completions.create(model="m", messages=USER)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Calling."
    [called] = choice.message.tool_calls or []
    assert called.id == "call_f" and called.type == "function"
    assert called.function.name == "f" and json.loads(called.function.arguments) == {"a": 1}
    assert completion.usage is not None and completion.usage.total_tokens == 7
    [request] = server.requests
    assert request.method == "POST" and request.path == "/v1/chat/completions"
    assert request.body == {"model": "m", "messages": USER}


async def test_non_streamed_response() -> None:
    async with OpenAIServer(Reply(["Hel", "lo"])) as server, asyncio.timeout(BOUND_S):
        response = await client_for(server).responses.create(model="m", input="hi")
    assert response.output_text == "Hello" and response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens == 2


async def test_streamed_chat_ends_with_done_and_a_usage_chunk() -> None:
    async with OpenAIServer(Reply(["a", "b"], usage=(3, 2))) as server, asyncio.timeout(BOUND_S):
        stream = await client_for(server).chat.completions.create(
            model="m",
            messages=USER,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["", "a", "b", None]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 5


async def test_a_failure_carries_status_body_and_headers() -> None:
    failure = Fail(
        403, "not for you", type="invalid_request_error", code="forbidden", headers={"x-why": "no"}
    )
    async with OpenAIServer(failure) as server, asyncio.timeout(BOUND_S):
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client_for(server).chat.completions.create(model="m", messages=USER)
    assert refused.value.code == "forbidden" and refused.value.type == "invalid_request_error"
    assert refused.value.response.headers["x-why"] == "no"
    assert "not for you" in refused.value.message


async def test_unknown_routes_are_404_and_an_exhausted_script_says_so() -> None:
    async with OpenAIServer() as server, asyncio.timeout(BOUND_S):
        client = client_for(server, max_retries=0)
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="m", input="x")
        completion = await client.chat.completions.create(model="m", messages=USER)
    assert completion.choices[0].message.content == "(end of script)"
    assert [r.path for r in server.requests] == ["/v1/embeddings", "/v1/chat/completions"]


async def test_a_dropped_stream_is_a_connection_error_for_the_client() -> None:
    async with OpenAIServer(Reply(["a", "b", "c"], end="drop", cut_after=1)) as server:
        stream = await client_for(server, max_retries=0).chat.completions.create(
            model="m",
            messages=USER,
            stream=True,
        )
        seen: list[str | None] = []
        async with asyncio.timeout(BOUND_S):
            with pytest.raises(openai.APIConnectionError):
                async for chunk in stream:
                    seen.append(chunk.choices[0].delta.content)
    assert seen == ["", "a"]
