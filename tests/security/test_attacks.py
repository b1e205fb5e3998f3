"""Each attack of issue 10 (schema, regex, malformed input) through real uvicorn, while another
session's ping shows whether the event loop stayed free.

Latency is compared as a ratio against the same session's pings with no attacker, in the same
run. The bound is loose on purpose: a backtracking `^(a+)+$` on 5,000 characters would never
finish and the old meta-schema check stalled for seconds, so failure is orders of magnitude away.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bridge.models.base import Model
from bridge.testing import ScriptedModel, call
from tests.conftest import StartBridge
from tests.security.wire import Peer, captured_logs, ping_baseline, ping_while

# The worst ping during an attack, over the median ping with none. A stall of one second
# against a 1 ms baseline is 1,000; the attacks below stalled for 5 s to forever before.
MAX_RATIO = 300
# Absolute floor for the comparison: the attacker's client shares the test's event loop, so
# sending its 1 MB frame delays the bystander's ping too (tens of ms), bridge or no bridge.
FLOOR_S = 0.5
CRAFTED = "a" * 5000 + "!"
EVIL = "^(a+)+$"


def evil_tool() -> dict[str, Any]:
    return {
        "name": "echo",
        "description": "Echo a word.",
        "parameters": {
            "type": "object",
            "properties": {"word": {"type": "string", "pattern": EVIL}},
        },
        "output_schema": {"type": "string", "pattern": EVIL},
    }


def models(session: str) -> Model:
    if session == "attacker":
        return ScriptedModel(
            [[call("echo", {"word": CRAFTED})], [call("echo", {"word": "aaa"})], ["done"]]
        )
    return ScriptedModel([["hi"]])


def assert_no_stall(baseline: float, during: list[float]) -> None:
    worst = max(during)
    print(
        f"bystander ping: {baseline * 1000:.2f} ms quiet, worst {worst * 1000:.2f} ms "
        f"over {len(during)} pings during the attack (x{worst / baseline:.0f})"
    )
    assert worst < max(baseline * MAX_RATIO, FLOOR_S), (
        f"ping {worst * 1000:.1f} ms during the attack, {baseline * 1000:.2f} ms without"
    )


async def test_catastrophic_pattern_runs_in_linear_time(start_bridge: StartBridge) -> None:
    async with start_bridge(model=models) as server:
        bystander = await Peer.open(server.ws_url("bystander"))
        attacker = await Peer.open(server.ws_url("attacker"))
        await bystander.hello()
        ready = await attacker.hello([evil_tool()])
        assert ready["tools"]["accepted"] == ["echo"]
        baseline = await ping_baseline(bystander)

        async def attack() -> dict[str, Any]:
            await attacker.send({"type": "message", "content": "go"})
            # The model's crafted argument is checked against the pattern and fails it.
            refused = await attacker.recv_until("tool_result")
            assert refused["status"] == "invalid_arguments", refused
            request = await attacker.recv_until("tool_request")
            await attacker.send(
                {"type": "tool_response", "id": request["id"], "status": "ok", "result": CRAFTED}
            )
            return await attacker.recv_until("tool_result")

        with captured_logs() as logs:
            task = asyncio.create_task(attack())
            during = await ping_while(bystander, task)
            result = await task
        # The crafted result does not match the output schema: an error the model reads.
        assert result["status"] == "error" and "does not match" in result["error"]
        assert len(result["error"]) < 1000
        assert_no_stall(baseline, during)
        assert logs.tracebacks() == []
        await attacker.close()
        await bystander.close()


def test_the_crafted_argument_is_refused_quickly() -> None:
    from bridge.limits import ToolLimits
    from bridge.toolspec import parse_tool

    spec = parse_tool(evil_tool(), ToolLimits())
    problem = spec.validate_arguments({"word": CRAFTED})
    assert problem is not None and "does not match" in problem
    assert spec.validate_arguments({"word": "aaa"}) is None


def wide_tool(index: int) -> dict[str, Any]:
    """A plain 30 KB schema: within every per-schema limit, costly to check the old way."""
    return {
        "name": f"wide_{index}",
        "parameters": {
            "type": "object",
            "properties": {
                f"f{index}_{i}": {"type": "string", "description": "d" * 60} for i in range(270)
            },
        },
    }


async def test_a_megabyte_registration_is_answered_without_stalling_others(
    start_bridge: StartBridge,
) -> None:
    tools = [wide_tool(i) for i in range(34)]
    frame = json.dumps({"type": "register_tools", "tools": tools})
    assert 900_000 < len(frame) < 1_048_576
    async with start_bridge() as server:
        bystander = await Peer.open(server.ws_url("bystander"))
        attacker = await Peer.open(server.ws_url("attacker"))
        await bystander.hello()
        await attacker.hello()
        baseline = await ping_baseline(bystander)

        async def attack() -> dict[str, Any]:
            await attacker.send(frame)
            return await attacker.recv_until("tools_updated")

        task = asyncio.create_task(attack())
        during = await ping_while(bystander, task)
        report = (await task)["tools"]
        # Part of the batch fits the per-message budget; the rest is refused unchecked.
        assert report["accepted"] and report["rejected"]
        assert all("bytes" in r["reason"] for r in report["rejected"])
        assert_no_stall(baseline, during)
        assert attacker.invalid == [] and bystander.invalid == []


async def test_a_batch_longer_than_the_limit_is_refused_in_one(
    start_bridge: StartBridge,
) -> None:
    frame = json.dumps({"type": "register_tools", "tools": [{}] * 100_000})
    async with start_bridge() as server:
        attacker = await Peer.open(server.ws_url("attacker"))
        await attacker.hello()
        report = (await attacker.recv_until_after(frame, "tools_updated"))["tools"]
        assert report["accepted"] == [] and len(report["rejected"]) == 1
        assert report["rejected"][0]["code"] == "too_many_tools"
        assert attacker.invalid == []


# Each malformed frame and the error docs/protocol.md promises for it; the connection lives on.
CORPUS: list[tuple[str | bytes, str]] = [
    ("this is not json", "invalid_json"),
    ("[" * 100_000, "invalid_json"),
    ('{"a":' * 50_000 + "1" + "}" * 50_000, "invalid_json"),
    ("[1, 2, 3]", "invalid_message"),
    ('"text"', "invalid_message"),
    ("null", "invalid_message"),
    ('{"type": []}', "unknown_type"),
    ('{"type": {"a": 1}}', "unknown_type"),
    ('{"type": 7}', "unknown_type"),
    ('{"type": null}', "unknown_type"),
    ('{"no_type": true}', "unknown_type"),
    (json.dumps({"type": "t" * 500_000}), "unknown_type"),
    ('{"type": "message"}', "invalid_message"),
    ('{"type": "message", "content": ["not", "text"]}', "invalid_message"),
    ('{"type": "ping", "nonce": 5}', "invalid_message"),
    (json.dumps({"type": "ping", "nonce": "n" * 100_000}), "invalid_message"),
    ('{"type": "tool_response", "status": "ok"}', "invalid_message"),
    ('{"type": "tool_response", "id": "x", "status": "maybe"}', "invalid_message"),
    ('{"type": "tool_progress", "id": "x", "progress": 7}', "invalid_message"),
    ('{"type": "unregister_tools", "names": "abc"}', "invalid_message"),
    ('{"type": "unregister_tools", "names": ["zzz"]}', "unknown_tool"),
    ('{"type": "stop"}', "no_active_run"),
    ('{"type": "hello", "protocol": 1}', "already_greeted"),
    (b"\x00\x01binary", "binary_not_supported"),
    ('{"type": "tool_response", "id": "\\ud83d", "status": "ok"}', "unknown_call"),
]


async def test_the_malformed_corpus_gets_its_documented_errors(start_bridge: StartBridge) -> None:
    async with start_bridge() as server:
        peer = await Peer.open(server.ws_url("corpus"))
        await peer.hello()
        with captured_logs() as logs:
            for frame, code in CORPUS:
                error = await peer.recv_until_after(frame, "error")
                assert error["code"] == code, (frame[:80], error)
                assert len(json.dumps(error)) < 2000
            assert await peer.ping_s("still-here") < 5
        assert peer.invalid == []
        assert logs.tracebacks() == []
        seqs = [f["seq"] for f in peer.frames if "seq" in f]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_a_lone_surrogate_in_a_message_leaves_the_session_working(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([["first"], ["second"]])
    async with start_bridge(model=model) as server:
        peer = await Peer.open(server.ws_url("surrogate"))
        await peer.hello()
        await peer.send('{"type": "message", "content": "half an emoji: \\ud83d"}')
        started = await peer.recv_until("run_started")
        assert started["content"] == "half an emoji: \ufffd"
        assert (await peer.recv_until("complete"))["reason"] == "done"
        await peer.send({"type": "message", "content": "again"})
        assert (await peer.recv_until("complete"))["reason"] == "done"
        assert peer.invalid == []
