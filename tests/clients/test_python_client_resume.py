"""The Python client against the real bridge through the fault proxy: cuts at the worst moments,
a half-open link, an expired session, and a chaos run of 1,000 tool calls."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

from bridge.calls import TerminalStatus
from bridge.conversation import AssistantTurn, ToolResult, Turn
from bridge.errors import ModelError
from bridge.models.base import TextDelta
from bridge.models.retry import StepRetryPolicy
from bridge.testing import FaultProxy, Hang, ScriptedModel, call
from bridge.toolspec import ToolSpec
from bridge_client import BridgeClient, ConversationReset, ToolContext
from tests.conftest import StartBridge

BOUND_S = 10


def resilient(url: str) -> BridgeClient:
    return BridgeClient(url, backoff_base_s=0.01, backoff_cap_s=0.1, close_timeout_s=1)


def settled_results(turns: list[Turn]) -> dict[str, list[ToolResult]]:
    """Each call the model made, with every result the model was given for it."""
    results: dict[str, list[ToolResult]] = {}
    for turn in turns:
        if isinstance(turn, AssistantTurn):
            for made in turn.tool_calls:
                results.setdefault(made.id, [])
    for turn in turns:
        if isinstance(turn, ToolResult):
            results.setdefault(turn.call_id, []).append(turn)
    return results


def counted_echo(
    client: BridgeClient,
    runs: Counter[str],
    gate: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
) -> None:
    @client.tool
    async def echo(text: str, ctx: ToolContext) -> str:
        """Echo the text in capitals."""
        runs[ctx.call_id] += 1
        if started is not None:
            started.set()
        if gate is not None:
            await gate.wait()
        return text.upper()


async def one_call_through_a_cut(
    start_bridge: StartBridge, arm: Any, gate: asyncio.Event | None = None
) -> tuple[BridgeClient, Counter[str], ScriptedModel, str]:
    model = ScriptedModel([[call("echo", {"text": "ping"})], ["answer: PING"]])
    runs: Counter[str] = Counter()
    async with start_bridge(model=model) as server, FaultProxy(server.host, server.port) as proxy:
        client = resilient(proxy.ws_url("cut"))
        counted_echo(client, runs, gate)
        async with asyncio.timeout(BOUND_S), client:
            trigger = arm(proxy)
            result = await client.run("go")
            assert trigger.fired.is_set()
    return client, runs, model, result.text


async def test_cut_after_the_answer_reached_the_server(start_bridge: StartBridge) -> None:
    # The server has the answer, the client never hears so: the tool_result comes in the replay.
    client, runs, model, text = await one_call_through_a_cut(
        start_bridge, lambda p: p.cut_on(b'"tool_request"', "down", where="after_reply")
    )
    assert (text, client.reconnects, list(runs.values())) == ("answer: PING", 1, [1])
    [results] = settled_results(model.requests[-1]).values()
    assert [(r.status, r.content) for r in results] == [(TerminalStatus.OK, "PING")]


async def test_cut_before_the_tool_result_reaches_the_client(start_bridge: StartBridge) -> None:
    client, runs, model, text = await one_call_through_a_cut(
        start_bridge, lambda p: p.cut_on(b'"tool_result"', "down", where="before")
    )
    assert (text, client.reconnects, list(runs.values())) == ("answer: PING", 1, [1])
    [results] = settled_results(model.requests[-1]).values()
    assert [r.status for r in results] == [TerminalStatus.OK]


async def test_an_answer_lost_on_the_way_is_sent_again(start_bridge: StartBridge) -> None:
    model = ScriptedModel([[call("echo", {"text": "ping"})], ["answer: PING"]])
    runs: Counter[str] = Counter()
    gate, started = asyncio.Event(), asyncio.Event()
    async with start_bridge(model=model) as server, FaultProxy(server.host, server.port) as proxy:
        client = resilient(proxy.ws_url("lost"))
        counted_echo(client, runs, gate, started)
        async with asyncio.timeout(BOUND_S), client:
            running = asyncio.create_task(client.run("go"))
            await started.wait()
            [handler] = client._handlers.values()
            first = await proxy.connection(0)
            first.stall("up")
            sent_before = first.bytes_up
            gate.set()
            await handler  # its answer is written, and held by the stalled proxy
            first.cut()
            assert first.bytes_up == sent_before
            result = await running
    assert (result.text, client.reconnects, list(runs.values())) == ("answer: PING", 1, [1])
    assert client.results_resent == 1
    [results] = settled_results(model.requests[-1]).values()
    assert [r.status for r in results] == [TerminalStatus.OK]


async def test_a_half_open_link_is_noticed_and_resumed(start_bridge: StartBridge) -> None:
    model = ScriptedModel([["hello again"]])
    settings = {"heartbeat_interval_s": 0.2, "heartbeat_timeout_s": 0.2}
    async with start_bridge(model=model, **settings) as server:
        async with FaultProxy(server.host, server.port) as proxy:
            client = resilient(proxy.ws_url("quiet"))
            async with asyncio.timeout(BOUND_S), client:
                limits = client.ready["limits"]
                assert (limits["heartbeat_interval_ms"], limits["heartbeat_timeout_ms"]) == (
                    200,
                    200,
                )
                await client.wait_for("ping")  # so there is a seq to resume after
                proxy.half_open()
                started = time.monotonic()
                await client.wait_for("ready")  # the next connection's
                noticed_s = time.monotonic() - started
                assert (client.dead_links, client.reconnects) == (1, 1)
                assert client.ready["resumed"]["gap"] is False
                result = await client.run("still there?")
    assert result.text == "hello again"
    assert noticed_s < 2.0


async def test_an_expired_session_starts_afresh_and_keeps_the_tools(
    start_bridge: StartBridge,
) -> None:
    runs: Counter[str] = Counter()
    resets: list[str] = []
    old = ScriptedModel([["first answer"]])
    new = ScriptedModel([[call("echo", {"text": "again"})], ["second answer"]])
    async with start_bridge(model=old) as first, start_bridge(model=new) as second:
        proxy = await FaultProxy(first.host, first.port).__aenter__()
        client = resilient(proxy.ws_url("forgotten"))
        client.on_conversation_reset = lambda: resets.append("reset")
        counted_echo(client, runs)
        async with asyncio.timeout(BOUND_S), proxy, client:
            assert (await client.run("one")).text == "first answer"
            # The same address now answers from a server that never saw this session.
            proxy.upstream = (second.host, second.port)
            proxy.cut()
            reset = await client.wait_for("error")
            assert reset["code"] == "session_expired"
            assert (client.conversation_resets, resets) == (1, ["reset"])
            result = await client.run("two")
    assert result.text == "second answer"
    assert list(runs.values()) == [1]
    assert [t for t in new.tools_seen[0] if t == "echo"] == ["echo"]


async def test_a_run_waiting_when_the_session_expires_raises(start_bridge: StartBridge) -> None:
    old = ScriptedModel([[call("echo", {"text": "x"})], ["partial", Hang()]])
    started = asyncio.Event()
    async with start_bridge(model=old) as first, start_bridge() as second:
        proxy = await FaultProxy(first.host, first.port).__aenter__()
        client = resilient(proxy.ws_url("mid-run"))
        counted_echo(client, Counter(), started=started)
        async with asyncio.timeout(BOUND_S), proxy, client:
            running = asyncio.create_task(client.run("never finishes"))
            await started.wait()
            proxy.upstream = (second.host, second.port)
            proxy.cut()
            try:
                await running
            except ConversationReset:
                pass
            else:
                raise AssertionError("run() returned for a run of a session that is gone")


class RetriedStep:
    """A model whose second step breaks once after some text, then succeeds when made again."""

    name = "retried"
    step_retry = StepRetryPolicy(base_delay_s=0.001, max_delay_s=0.001)

    def __init__(self) -> None:
        self.streams = 0

    def stream(self, conversation: Sequence[Turn], tools: Sequence[ToolSpec]) -> AsyncIterator[Any]:
        self.streams += 1
        return self._play(self.streams)

    async def _play(self, attempt: int) -> AsyncIterator[Any]:
        if attempt == 1:
            yield TextDelta("Let me look. ")
            yield call("echo", {"text": "q"})
            return
        yield TextDelta("It is ")
        if attempt == 2:
            yield TextDelta("garbl")
            raise ModelError("the stream broke", broken_stream=True)
        yield TextDelta("Q.")


async def test_step_retry_across_a_cut_keeps_only_the_final_attempt(
    start_bridge: StartBridge,
) -> None:
    runs: Counter[str] = Counter()
    model = RetriedStep()
    async with start_bridge(model=model) as server, FaultProxy(server.host, server.port) as proxy:
        client = resilient(proxy.ws_url("retry"))
        counted_echo(client, runs)
        async with asyncio.timeout(BOUND_S), client:
            # The retry notice and the new attempt's first words arrive, the rest is replayed.
            trigger = proxy.cut_on(b"Q.", where="before")
            result = await client.run("what is it?")
            assert trigger.fired.is_set()
    assert (result.text, result.reason, client.reconnects) == ("Let me look. It is Q.", "done", 1)
    assert [e["type"] for e in result.events].count("step_retry") == 1
    assert (model.streams, list(runs.values())) == (3, [1])


# Chaos ----------------------------------------------------------------------------------------

CLIENTS = 4
RUNS_PER_CLIENT = 25
STEPS_PER_RUN = 5
CALLS_PER_STEP = 2
TOTAL_CALLS = CLIENTS * RUNS_PER_CLIENT * STEPS_PER_RUN * CALLS_PER_STEP


def chaos_script(client_no: int) -> ScriptedModel:
    steps: list[list[Any]] = []
    for run in range(RUNS_PER_CLIENT):
        for step in range(STEPS_PER_RUN):
            steps.append(
                [f"step {step} "]
                + [
                    call("echo", {"text": f"c{client_no}-r{run}-s{step}-k{k}"})
                    for k in range(CALLS_PER_STEP)
                ]
            )
        steps.append([f"run {run} done"])
    return ScriptedModel(steps)


async def test_chaos_1000_calls_with_cuts_every_few_calls(start_bridge: StartBridge) -> None:
    models = {f"chaos-{n}": chaos_script(n) for n in range(CLIENTS)}
    by_call: Counter[str] = Counter()
    by_text: Counter[str] = Counter()
    rng = random.Random(9)
    targeted = Counter[str]()

    async def drive(n: int, proxy: FaultProxy) -> list[str]:
        client = resilient(proxy.ws_url(f"chaos-{n}"))

        @client.tool
        async def echo(text: str, ctx: ToolContext) -> str:
            """Echo the text in capitals."""
            by_call[ctx.call_id] += 1
            by_text[text] += 1
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
            return text.upper()

        texts = []
        async with client:
            for _ in range(RUNS_PER_CLIENT):
                result = await client.run("next")
                assert result.reason == "done", result
                texts.append(result.text)
        reconnects.append(client.reconnects)
        duplicates.append(client.duplicates)
        resent.append(client.results_resent)
        return texts

    reconnects: list[int] = []
    duplicates: list[int] = []
    resent: list[int] = []
    started = time.monotonic()
    async with start_bridge(model=lambda sid: models[sid]) as server:
        async with FaultProxy(server.host, server.port) as proxy:
            proxy.random_cuts(mean_bytes=4_000, seed=5, min_bytes=600)

            aimed: list[Any] = []

            async def aim() -> None:
                # The two moments a random byte count rarely hits exactly, on every third
                # connection (a random cut may still come first; then that one never fires).
                for index in itertools.count(0, 3):
                    connection = await proxy.connection(index, timeout_s=60)
                    if index % 2:
                        # The client's answer has gone up: the server has it, the client
                        # never learns so on this connection.
                        aimed.append(connection.cut_on(b'"tool_request"', where="after_reply"))
                    else:
                        # The tool_result never completes at the client.
                        aimed.append(connection.cut_on(b'"tool_result"', where="before"))

            aiming = asyncio.create_task(aim())
            async with asyncio.timeout(50):
                texts = await asyncio.gather(*(drive(n, proxy) for n in range(CLIENTS)))
            aiming.cancel()
            targeted.update(t.where for t in aimed if t.fired.is_set())
            cuts = proxy.cuts
            cut_log = list(proxy.cut_log)
    elapsed = time.monotonic() - started

    expected_texts = [
        "".join(f"step {s} " for s in range(STEPS_PER_RUN)) + f"run {r} done"
        for r in range(RUNS_PER_CLIENT)
    ]
    assert texts == [expected_texts] * CLIENTS  # every run completed, each text once
    assert len(by_call) == TOTAL_CALLS and set(by_call.values()) == {1}
    assert len(by_text) == TOTAL_CALLS and set(by_text.values()) == {1}
    statuses: Counter[TerminalStatus] = Counter()
    for model in models.values():
        assert model.steps == []
        results = settled_results(model.requests[-1])
        assert len(results) == TOTAL_CALLS // CLIENTS
        for results_of_one in results.values():
            assert len(results_of_one) == 1  # exactly one terminal result per call
            statuses[results_of_one[0].status] += 1
            assert results_of_one[0].content.isupper()
    assert statuses == {TerminalStatus.OK: TOTAL_CALLS}  # so none cancelled for a disconnect
    assert cuts >= TOTAL_CALLS // 8, cuts  # about one every five calls
    assert targeted["after_reply"] > 0 and targeted["before"] > 0, (
        targeted,
        Counter(r.reason for r in cut_log),
    )
    print(
        f"\nchaos: {TOTAL_CALLS} calls, {cuts} cuts ({dict(targeted)} aimed), "
        f"{sum(reconnects)} reconnects, {sum(resent)} results sent again, "
        f"{sum(duplicates)} duplicate frames dropped, "
        f"{elapsed:.1f} s"
    )


async def test_a_server_named_session_is_resumed_by_its_name(start_bridge: StartBridge) -> None:
    model = ScriptedModel([[call("echo", {"text": "ping"})], ["answer: PING"]])
    runs: Counter[str] = Counter()
    async with start_bridge(model=model) as server, FaultProxy(server.host, server.port) as proxy:
        # `/ws/agent`: the server makes the session's id and says it in `ready`.
        client = resilient(proxy.ws_url("/ws/agent"))
        counted_echo(client, runs)
        async with asyncio.timeout(BOUND_S), client:
            named = client.ready["session_id"]
            trigger = proxy.cut_on(b'"tool_request"', "down")
            result = await client.run("go")
            await trigger.wait()
            assert client.reconnects >= 1
            assert client.ready["session_id"] == named
    assert result.text == "answer: PING" and list(runs.values()) == [1]
    assert client.url.endswith(f"/ws/agent/{named}")
