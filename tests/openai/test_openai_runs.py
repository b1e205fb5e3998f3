"""Runs through the real `openai` client against the OpenAI-compatible test server, end to end:
the bridge on uvicorn, the Python client on a WebSocket, both APIs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bridge import ServerTools
from bridge.testing import OpenAIServer, Reply, tool_call
from bridge_client import BridgeClient
from tests.conftest import StartBridge
from tests.openai.openai_support import (
    APIS,
    BOUND_S,
    assert_every_call_answered,
    provider,
    sent_calls,
    sent_results,
    sent_tools,
    sent_user_texts,
)

pytestmark = pytest.mark.parametrize("api", APIS)


def tokens(events: list[dict[str, Any]]) -> list[str]:
    return [e["content"] for e in events if e["type"] == "token"]


async def test_text_streams_token_by_token(api: str, start_bridge: StartBridge) -> None:
    release = asyncio.Event()
    pieces = ["The ", "answer ", "is ", "42", "."]
    script = Reply(pieces, hold_after=1, release=release)
    async with OpenAIServer(script) as llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"tokens-{api}"))
        async with asyncio.timeout(BOUND_S), client:
            await client.send("what is the answer?")
            first = await client.wait_for("token")
            # The server holds the rest of the response until now: the first token reached
            # the client while the model's HTTP response was still open.
            assert first["content"] == "The "
            release.set()
            rest = [await client.next_event()]
            while rest[-1]["type"] != "complete":
                rest.append(await client.next_event())
    assert [first["content"], *tokens(rest)] == pieces
    assert rest[-1]["reason"] == "done"
    assert llm.requests[0].body["stream"] is True
    assert sent_user_texts(llm.requests[0]) == ["what is the answer?"]


async def test_fragmented_parallel_calls_run_and_results_pair_with_their_ids(
    api: str, start_bridge: StartBridge
) -> None:
    weather_args = {"city": "Saint-Étienne", "units": "celsius", "days": [1, 2, 3]}
    llm = OpenAIServer(
        Reply(
            "Looking up both. ",
            calls=[
                tool_call("get_weather", weather_args, id="call_weather", fragment_chars=2),
                tool_call("get_time", {"zone": "Europe/Paris"}, id="call_time", fragment_chars=1),
            ],
            interleave_calls=True,
        ),
        Reply("It is sunny at noon."),
    )
    received: dict[str, dict[str, Any]] = {}
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"parallel-{api}"))

        @client.tool
        def get_weather(city: str, units: str, days: list[int]) -> dict[str, Any]:
            """Weather forecast for a city."""
            received["get_weather"] = {"city": city, "units": units, "days": days}
            return {"city": city, "sky": "sunny"}

        @client.tool
        async def get_time(zone: str) -> str:
            """Current time in a time zone."""
            received["get_time"] = {"zone": zone}
            return "12:00"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("weather and time in Saint-Étienne?")

    assert received == {"get_weather": weather_args, "get_time": {"zone": "Europe/Paris"}}
    assert result.reason == "done" and result.text == "Looking up both. It is sunny at noon."
    statuses = {e["name"]: e["status"] for e in result.events if e["type"] == "tool_result"}
    assert statuses == {"get_weather": "ok", "get_time": "ok"}

    first, follow_up = llm.requests
    assert sent_tools(first) == {
        name: {"description": d["description"], "parameters": d["parameters"]}
        for name, d in ((d["name"], d) for d in client.definitions)
    }
    assert sent_calls(follow_up) == [
        ("call_weather", "get_weather", json.dumps(weather_args)),
        ("call_time", "get_time", json.dumps({"zone": "Europe/Paris"})),
    ]
    results = sent_results(follow_up)
    assert json.loads(results["call_weather"][0]) == {"city": "Saint-Étienne", "sky": "sunny"}
    assert results["call_time"] == ["12:00"]
    assert_every_call_answered(follow_up)


async def test_broken_and_schema_invalid_arguments_are_corrected_in_one_run(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(
        Reply(calls=[tool_call("get_weather", '{"city": "Par', id="call_broken")]),
        Reply(calls=[tool_call("get_weather", {"city": 7}, id="call_wrong_shape")]),
        Reply(calls=[tool_call("get_weather", {"city": "Paris"}, id="call_fixed")]),
        Reply("Sunny in Paris."),
    )
    cities: list[str] = []
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"correct-{api}"))

        @client.tool
        def get_weather(city: str) -> str:
            """Weather for a city."""
            cities.append(city)
            return "sunny"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("weather in Paris?")

    assert cities == ["Paris"], "the client only ever saw the valid call"
    assert result.reason == "done" and result.text == "Sunny in Paris."
    statuses = [e["status"] for e in result.events if e["type"] == "tool_result"]
    assert statuses == ["invalid_arguments", "invalid_arguments", "ok"]
    requests_ = [e for e in result.events if e["type"] == "tool_request"]
    assert [r["arguments"] for r in requests_] == [{"city": "Paris"}]

    broken = sent_results(llm.requests[1])["call_broken"][0]
    assert broken.startswith("[invalid_arguments]") and "not valid JSON" in broken
    wrong_shape = sent_results(llm.requests[2])["call_wrong_shape"][0]
    assert wrong_shape.startswith("[invalid_arguments]") and "/city" in wrong_shape
    assert sent_results(llm.requests[3])["call_fixed"] == ["sunny"]
    for request in llm.requests[1:]:
        assert_every_call_answered(request)


async def test_stop_mid_stream_closes_the_http_stream_and_settles_every_call(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(
        Reply(
            calls=[
                tool_call("lookup", {"q": "a"}, id="call_a"),
                tool_call("lookup", {"q": "b"}, id="call_b"),
            ]
        ),
        # The second step streams a sentence and the head of another call, then goes quiet.
        Reply(
            ["Both found. ", "Now "],
            calls=[tool_call("lookup", {"q": "never finished"}, id="call_partial")],
            end="stall",
            cut_after=4,
        ),
        Reply("Fresh start."),
    )
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"stop-{api}"))

        @client.tool
        def lookup(q: str) -> str:
            """Look something up."""
            return f"found {q}"

        async with asyncio.timeout(BOUND_S), client:
            await client.send("look up a and b")
            await client.wait_for("token")
            await client.stop()
            complete = await client.wait_for("complete")
            assert complete["reason"] == "stopped"
            async with asyncio.timeout(1):
                await llm.disconnected.wait()
            assert llm.disconnects == 1
            after = await client.run("start over")

    assert after.reason == "done" and after.text == "Fresh start."
    follow_up = llm.requests[2]
    assert [c[0] for c in sent_calls(follow_up)] == ["call_a", "call_b"]
    assert sent_results(follow_up) == {"call_a": ["found a"], "call_b": ["found b"]}
    assert_every_call_answered(follow_up)
    assert sent_user_texts(follow_up) == ["look up a and b", "start over"]


async def test_stop_while_a_client_tool_is_pending_gives_it_a_cancelled_result(
    api: str, start_bridge: StartBridge
) -> None:
    llm = OpenAIServer(
        Reply(
            calls=[
                tool_call("confirm", {"question": "go?"}, id="call_confirm"),
                tool_call("quick", {}, id="call_quick"),
            ]
        ),
        Reply("Understood."),
    )
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"stop-pending-{api}"))

        @client.tool
        async def confirm(question: str) -> bool:
            """Ask the user to confirm."""
            await asyncio.Event().wait()
            return True

        @client.tool
        def quick() -> str:
            """Answers at once."""
            return "done"

        async with asyncio.timeout(BOUND_S), client:
            await client.send("ask me")
            while (await client.wait_for("tool_request"))["name"] != "confirm":
                pass
            await client.stop()
            complete = await client.wait_for("complete")
            assert complete["reason"] == "stopped"
            after = await client.run("never mind")

    assert after.reason == "done"
    follow_up = llm.requests[1]
    results = sent_results(follow_up)
    assert results["call_confirm"][0].startswith("[cancelled]")
    assert_every_call_answered(follow_up)


async def test_usage_is_reported_in_complete(api: str, start_bridge: StartBridge) -> None:
    llm = OpenAIServer(
        Reply(calls=[tool_call("ping", {}, id="call_ping")], usage=(120, 15)),
        Reply("pong", usage=(150, 3)),
    )
    async with llm, start_bridge(model=provider(api, llm)) as server:
        client = BridgeClient(server.ws_url(f"usage-{api}"))

        @client.tool
        def ping() -> str:
            """Ping."""
            return "pong"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("ping")
    assert result.usage == {"prompt_tokens": 270, "completion_tokens": 18, "total_tokens": 288}
    if api == "chat":
        assert llm.requests[0].body["stream_options"] == {"include_usage": True}


async def test_server_tool_and_client_tool_in_one_run(api: str, start_bridge: StartBridge) -> None:
    tools = ServerTools()

    @tools.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    llm = OpenAIServer(
        Reply(
            calls=[
                tool_call("add", {"a": 19, "b": 23}, id="call_add"),
                tool_call("read_selection", {}, id="call_sel"),
            ]
        ),
        Reply(["The sum is 42 ", "and you selected 'hello'."]),
    )
    async with llm, start_bridge(model=provider(api, llm), server_tools=tools) as server:
        client = BridgeClient(server.ws_url(f"mixed-{api}"))

        @client.tool
        def read_selection() -> str:
            """The text the user selected."""
            return "hello"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("add 19 and 23, and read my selection")

    outcomes = {
        e["name"]: (e["source"], e["status"], e["result"])
        for e in result.events
        if e["type"] == "tool_result"
    }
    assert outcomes == {"add": ("server", "ok", 42), "read_selection": ("client", "ok", "hello")}
    assert [e["name"] for e in result.events if e["type"] == "tool_request"] == ["read_selection"]
    assert result.reason == "done"
    assert result.text == "The sum is 42 and you selected 'hello'."
    assert set(sent_tools(llm.requests[0])) == {"add", "read_selection"}
    assert sent_results(llm.requests[1]) == {"call_add": ["42"], "call_sel": ["hello"]}
    assert len(llm.requests) == 2
