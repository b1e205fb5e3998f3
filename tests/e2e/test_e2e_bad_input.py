"""Bad input over a real socket: each gets its documented outcome, and the connection lives on
wherever docs/protocol.md says it does."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

from bridge.agent.runtime import SessionRuntime
from bridge.testing import ScriptedModel, call
from bridge_client import BridgeClient
from tests.conftest import StartBridge

BOUND_S = 10


async def still_alive(client: BridgeClient, nonce: str = "alive") -> None:
    await client.send_json({"type": "ping", "nonce": nonce})
    event = await client.next_event()
    assert (event["type"], event.get("nonce")) == ("pong", nonce)


async def expect_error(client: BridgeClient, frame: str | bytes) -> dict[str, Any]:
    await client.send_raw(frame)
    event = await client.next_event()
    assert event["type"] == "error", event
    return event


async def closed_with(client: BridgeClient) -> int | None:
    while True:
        try:
            await client.next_event()
        except ConnectionError:
            return client.close_code


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("this is not json", "invalid_json"),
        ("[1, 2, 3]", "invalid_message"),
        ("null", "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"no_type": true}', "unknown_type"),
        ('{"type": "message"}', "invalid_message"),
        ('{"type": "message", "content": ["not", "text"]}', "invalid_message"),
        ('{"type": "tool_response", "status": "ok"}', "invalid_message"),
        (b"\x00\x01binary", "binary_not_supported"),
    ],
)
async def test_malformed_frames_get_an_error_and_the_connection_lives(
    start_bridge: StartBridge, frame: str | bytes, code: str
) -> None:
    async with start_bridge() as server:
        async with asyncio.timeout(BOUND_S), BridgeClient(server.ws_url("bad")) as client:
            assert (await expect_error(client, frame))["code"] == code
            await still_alive(client)
            result = await client.run("hello there")
            assert result.reason == "done"


async def test_message_before_hello_is_refused_then_hello_works(start_bridge: StartBridge) -> None:
    async with start_bridge() as server:
        client = BridgeClient(server.ws_url("early"))
        async with asyncio.timeout(BOUND_S):
            await client.connect(hello=False)
            error = await expect_error(client, json.dumps({"type": "message", "content": "hi"}))
            assert error["code"] == "hello_required"
            await client.send_json({"type": "hello", "protocol": 1, "tools": []})
            assert (await client.wait_for("ready"))["session_id"] == "early"
            error = await expect_error(client, json.dumps({"type": "hello", "protocol": 1}))
            assert error["code"] == "already_greeted"
            await still_alive(client)
            await client.close()


async def test_unsupported_protocol_version_closes_with_policy(start_bridge: StartBridge) -> None:
    async with start_bridge() as server:
        client = BridgeClient(server.ws_url("v2"))
        async with asyncio.timeout(BOUND_S):
            await client.connect(hello=False)
            error = await expect_error(client, json.dumps({"type": "hello", "protocol": 2}))
            assert error["code"] == "unsupported_protocol"
            assert await closed_with(client) == 1008
            await client.close()


@pytest.mark.parametrize(
    "content",
    # Just over the limit (the bridge's own check), a multi-byte text whose character count is
    # under the limit, and far over it (the WebSocket layer's frame limit).
    ["x" * 4100, "é" * 3000, "x" * 100_000],
)
async def test_message_over_the_size_limit_closes_1009(
    start_bridge: StartBridge, content: str
) -> None:
    async with start_bridge(max_message_bytes=4096) as server:
        async with asyncio.timeout(BOUND_S), BridgeClient(server.ws_url("big")) as client:
            assert client.ready["limits"]["max_message_bytes"] == 4096
            await client.send("x" * 3000)  # under the limit: fine
            await client.send_raw(json.dumps({"type": "message", "content": content}))
            assert await closed_with(client) == 1009


async def test_tool_definitions_are_accepted_or_rejected_one_by_one(
    start_bridge: StartBridge,
) -> None:
    good = {"name": "good", "parameters": {"type": "object"}}
    tools = [
        good,
        {"name": "bad_schema", "parameters": {"type": "object", "properties": {"a": {"type": 9}}}},
        {
            "name": "remote",
            "parameters": {
                "type": "object",
                "properties": {"a": {"$ref": "https://schemas.example/evil.json"}},
            },
        },
        dict(good),
    ]
    async with start_bridge() as server:
        client = BridgeClient(server.ws_url("defs"))
        async with asyncio.timeout(BOUND_S):
            await client.connect(hello=False)
            await client.send_json({"type": "hello", "protocol": 1, "tools": tools})
            ready = await client.wait_for("ready")
            assert ready["tools"]["accepted"] == ["good"]
            rejected = [(r["name"], r["code"]) for r in ready["tools"]["rejected"]]
            assert rejected == [
                ("bad_schema", "invalid_tool"),
                ("remote", "network_ref"),
                ("good", "duplicate_tool"),
            ]
            await client.send_json(
                {"type": "register_tools", "tools": [{"name": "later"}, {"name": "good"}]}
            )
            updated = await client.wait_for("tools_updated")
            assert updated["tools"]["accepted"] == ["later"]
            assert updated["active"] == ["good", "later"]
            await client.send_json({"type": "unregister_tools", "names": ["good", "nope"]})
            updated = await client.wait_for("tools_updated")
            assert updated["removed"] == ["good"] and updated["active"] == ["later"]
            assert (await client.next_event())["code"] == "unknown_tool"
            await client.close()


async def test_unknown_and_duplicate_responses(start_bridge: StartBridge) -> None:
    release = asyncio.Event()
    model = ScriptedModel([[call("echo", {"text": "a"})], ["done"]])
    async with start_bridge(model=model) as server:
        client = BridgeClient(server.ws_url("responses"))

        @client.tool
        async def echo(text: str) -> str:
            await release.wait()
            return text

        async with asyncio.timeout(BOUND_S), client:
            unknown = json.dumps({"type": "tool_response", "id": "nope", "result": 1})
            error = await expect_error(client, unknown)
            assert (error["code"], error["id"]) == ("unknown_call", "nope")
            await client.send("go")
            request = await client.wait_for("tool_request")
            release.set()
            result = await client.wait_for("tool_result")
            assert result["status"] == "ok"
            await client.wait_for("complete")
            duplicate = {"type": "tool_response", "id": request["id"], "result": "again"}
            error = await expect_error(client, json.dumps(duplicate))
            assert (error["code"], error["id"]) == ("duplicate_response", request["id"])
            progress = {"type": "tool_progress", "id": "ghost"}
            assert (await expect_error(client, json.dumps(progress)))["code"] == "unknown_call"
            await still_alive(client)


async def test_stop_without_a_run_is_an_error_not_a_crash(start_bridge: StartBridge) -> None:
    async with start_bridge() as server:
        async with asyncio.timeout(BOUND_S), BridgeClient(server.ws_url("idle")) as client:
            error = await expect_error(client, json.dumps({"type": "stop"}))
            assert error["code"] == "no_active_run"
            await still_alive(client)


async def test_missing_pong_closes_4408(start_bridge: StartBridge) -> None:
    settings = {"heartbeat_interval_s": 0.1, "heartbeat_timeout_s": 0.2}
    async with start_bridge(**settings) as server:
        async with asyncio.timeout(BOUND_S):
            silent = BridgeClient(server.ws_url("silent"), answer_pings=False)
            async with silent:
                assert (await silent.wait_for("ping"))["nonce"]
                assert await closed_with(silent) == 4408
            polite = BridgeClient(server.ws_url("polite"))
            async with polite:
                for _ in range(3):
                    await polite.wait_for("ping")
                await still_alive(polite)


async def test_no_hello_in_time_closes_1008(start_bridge: StartBridge) -> None:
    async with start_bridge(hello_timeout_s=0.2) as server:
        client = BridgeClient(server.ws_url("mute"))
        async with asyncio.timeout(BOUND_S):
            await client.connect(hello=False)
            assert await closed_with(client) == 1008
            await client.close()


async def test_a_newer_connection_needs_the_token_and_then_replaces_the_older_4409(
    start_bridge: StartBridge,
) -> None:
    async with start_bridge() as server:
        url = server.ws_url("same")
        async with asyncio.timeout(BOUND_S), BridgeClient(url) as old:
            await old.run("something happens in the session")
            async with websockets.connect(url) as stranger:
                await stranger.send(json.dumps({"type": "hello", "protocol": 1}))
                assert json.loads(await stranger.recv())["code"] == "resume_denied"
                with pytest.raises(websockets.ConnectionClosed) as refused:
                    await stranger.recv()
                assert refused.value.rcvd is not None and refused.value.rcvd.code == 4403
            await still_alive(old, "untouched")
            resume = {"token": old.ready["resume_token"], "last_seq": 0}
            async with websockets.connect(url) as new:
                await new.send(json.dumps({"type": "hello", "protocol": 1, "resume": resume}))
                ready = json.loads(await new.recv())
                assert ready["type"] == "ready" and ready["resumed"]["gap"] is True
                assert await closed_with(old) == 4409


async def test_internal_error_closes_1011(
    start_bridge: StartBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = SessionRuntime.handle

    async def explode(self: SessionRuntime, message: Any) -> None:
        if getattr(message, "content", None) == "explode":
            raise RuntimeError("bug inside the bridge")
        await original(self, message)

    monkeypatch.setattr(SessionRuntime, "handle", explode)
    async with start_bridge() as server:
        bug_url = server.ws_url("bug")
        async with asyncio.timeout(BOUND_S), BridgeClient(bug_url, reconnect=False) as client:
            await client.send("explode")
            assert await closed_with(client) == 1011


async def test_token_auth_refuses_4401_and_accepts_the_token(start_bridge: StartBridge) -> None:
    async with start_bridge(token="s3cret") as server:
        async with asyncio.timeout(BOUND_S):
            anonymous = BridgeClient(server.ws_url("auth"))
            await anonymous.connect(hello=False)
            assert await closed_with(anonymous) == 4401
            await anonymous.close()
            wrong = BridgeClient(server.ws_url("auth") + "?token=guess")
            await wrong.connect(hello=False)
            assert await closed_with(wrong) == 4401
            await wrong.close()
            async with BridgeClient(server.ws_url("auth"), token="s3cret") as bearer:
                await still_alive(bearer)
            async with BridgeClient(server.ws_url("auth2") + "?token=s3cret") as query:
                await still_alive(query)
