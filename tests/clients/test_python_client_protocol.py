"""The Python client against a hand-scripted server: resume, dedup, kept results, dead links,
step retries, expired sessions and the closes it must not retry after."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge_client import BridgeClient, ConversationReset, backoff_delay
from tests.clients.scripted_peer import Peer, ScriptedPeerServer, ready

BOUND_S = 5


def counting_client(
    url: str, calls: Counter[str], gate: asyncio.Event | None = None
) -> BridgeClient:
    client = BridgeClient(url, backoff_base_s=0.01, backoff_cap_s=0.05)

    @client.tool(idempotent=True)
    async def echo(text: str) -> str:
        calls[text] += 1
        if gate is not None:
            await gate.wait()
        return text.upper()

    return client


@contextlib.asynccontextmanager
async def opened(
    client: BridgeClient, server: ScriptedPeerServer, first_ready: dict[str, Any]
) -> AsyncIterator[Peer]:
    """Connect the client, answer its hello on the first connection, close it at the end."""
    connecting = asyncio.create_task(client.connect())
    peer = await server.accept()
    await peer.send(first_ready)
    await connecting
    try:
        yield peer
    finally:
        await client.close()


def request(call_id: str, seq: int, text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {
        "type": "tool_request",
        "seq": seq,
        "id": call_id,
        "run_id": "r1",
        "name": "echo",
        "arguments": {"text": text},
        "timeout_ms": 30_000,
        **extra,
    }


async def test_a_lost_result_is_sent_again_on_resume_and_the_handler_runs_once() -> None:
    calls: Counter[str] = Counter()
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = counting_client(server.url, calls)
        async with opened(client, server, ready("tok-1")) as first:
            assert "resume" not in first.hello
            assert first.hello["tools"][0]["idempotent"] is True
            await first.send(request("c1", 1, "a"))
            answer = await first.recv()
            assert (answer["id"], answer["result"]) == ("c1", "A")
            first.abort()  # as if the answer died on the way

            second = await server.accept()
            assert second.hello["resume"] == {"token": "tok-1", "last_seq": 1}
            await second.send(ready("tok-1", resumed={"from_seq": 2, "pending_calls": ["c1"]}))
            again = await second.recv()
            assert (again["type"], again["id"], again["result"]) == ("tool_response", "c1", "A")
            # The server also redelivers the call: the result went already, nothing runs.
            await second.send(request("c1", 2, "a", redelivered=True))
            await second.send({"type": "ping", "seq": 3, "nonce": "after"})
            assert await second.recv() == {"type": "pong", "nonce": "after"}
            assert client.reconnects == 1
    assert calls == {"a": 1}


async def test_a_redelivered_call_whose_handler_still_runs_gets_one_answer() -> None:
    calls: Counter[str] = Counter()
    gate = asyncio.Event()
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = counting_client(server.url, calls, gate)
        async with opened(client, server, ready("tok-1")) as first:
            await first.send(request("c1", 1, "slow"))
            await first.send({"type": "ping", "seq": 2, "nonce": "seen"})
            assert (await first.recv())["nonce"] == "seen"  # the request has been read
            first.abort()

            second = await server.accept()
            assert second.hello["resume"]["last_seq"] == 2
            await second.send(ready("tok-1", resumed={"from_seq": 3, "pending_calls": ["c1"]}))
            await second.send(request("c1", 3, "slow", redelivered=True))
            gate.set()
            answer = await second.recv()
            assert (answer["id"], answer["result"]) == ("c1", "SLOW")
            await second.send({"type": "ping", "seq": 4, "nonce": "end"})
            assert (await second.recv())["nonce"] == "end"  # and no second answer before it
    assert calls == {"slow": 1}


async def test_a_result_the_server_already_has_is_dropped_and_a_finished_call_is_cancelled() -> (
    None
):
    calls: Counter[str] = Counter()
    gate = asyncio.Event()
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = counting_client(server.url, calls, gate)
        async with opened(client, server, ready("tok-1")) as first:
            await first.send(request("done", 1, "x"), request("gone", 2, "y"))
            gate.set()
            assert {(await first.recv())["id"], (await first.recv())["id"]} == {"done", "gone"}
            first.abort()
            second = await server.accept()
            # Neither call is pending: the server has both answers (or gave up on them).
            await second.send(ready("tok-1", resumed={"from_seq": 3, "pending_calls": []}))
            await second.send({"type": "ping", "seq": 3, "nonce": "quiet"})
            assert await second.recv() == {"type": "pong", "nonce": "quiet"}
            # A stray redelivery of a call that ended never runs it again.
            await second.send(request("done", 4, "x", redelivered=True))
            await second.send({"type": "ping", "seq": 5, "nonce": "still quiet"})
            assert await second.recv() == {"type": "pong", "nonce": "still quiet"}
            assert client._kept == {}
    assert calls == {"x": 1, "y": 1}


async def test_replayed_frames_are_processed_once_and_run_returns_across_the_drop() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        async with opened(client, server, ready("tok-1")) as first:
            running = asyncio.create_task(client.run("question"))
            assert (await first.recv())["content"] == "question"
            await first.send(
                {"type": "run_started", "seq": 1, "run_id": "r1", "content": "question"},
                {"type": "token", "seq": 2, "run_id": "r1", "content": "a"},
                {"type": "token", "seq": 3, "run_id": "r1", "content": "b"},
            )
            await first.send({"type": "ping", "seq": 4, "nonce": "n"})
            assert (await first.recv())["nonce"] == "n"
            first.abort()

            second = await server.accept()
            assert second.hello["resume"]["last_seq"] == 4
            await second.send(ready("tok-1", resumed={"from_seq": 5, "pending_calls": []}))
            # A replay that starts too early: what the client has seen must be dropped.
            await second.send(
                {"type": "token", "seq": 2, "run_id": "r1", "content": "a"},
                {"type": "token", "seq": 3, "run_id": "r1", "content": "b"},
                {"type": "token", "seq": 5, "run_id": "r1", "content": "c"},
                {"type": "complete", "seq": 6, "run_id": "r1", "reason": "done", "steps": 1},
            )
            result = await running
            assert (result.text, result.reason) == ("abc", "done")
            assert client.duplicates == 2
            assert client.last_seq == 6
            # Frames a connection sends on its own carry seq 0: never taken for replays.
            await second.send({"type": "pong", "seq": 0, "nonce": "direct"})
            await second.send({"type": "pong", "seq": 0, "nonce": "direct"})
            assert (await client.wait_for("pong"))["nonce"] == "direct"
            assert (await client.wait_for("pong"))["nonce"] == "direct"


async def test_step_retry_drops_the_text_of_the_voided_step() -> None:
    calls: Counter[str] = Counter()
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = counting_client(server.url, calls)
        async with opened(client, server, ready()) as peer:
            running = asyncio.create_task(client.run("go"))
            await peer.recv()
            await peer.send(
                {"type": "run_started", "seq": 1, "run_id": "r1", "content": "go"},
                {"type": "token", "seq": 2, "run_id": "r1", "content": "Let me look. "},
                request("c1", 3, "q"),
            )
            assert (await peer.recv())["id"] == "c1"
            await peer.send(
                {
                    "type": "tool_result",
                    "seq": 4,
                    "id": "c1",
                    "run_id": "r1",
                    "name": "echo",
                    "status": "ok",
                    "result": "Q",
                },
                {"type": "token", "seq": 5, "run_id": "r1", "content": "It is "},
                {"type": "token", "seq": 6, "run_id": "r1", "content": "garbl"},
                {
                    "type": "step_retry",
                    "seq": 7,
                    "run_id": "r1",
                    "step": 2,
                    "attempt": 2,
                    "reason": "model_unavailable",
                },
                {"type": "token", "seq": 8, "run_id": "r1", "content": "It is Q."},
                {"type": "complete", "seq": 9, "run_id": "r1", "reason": "done", "steps": 2},
            )
            result = await running
            assert result.text == "Let me look. It is Q."
            assert client._kept == {}  # the tool_result acknowledged the answer


async def test_an_expired_session_starts_fresh_with_the_same_tools_and_says_so() -> None:
    calls: Counter[str] = Counter()
    resets: list[int] = []
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = counting_client(server.url, calls)
        client.on_conversation_reset = lambda: resets.append(client.last_seq)
        async with opened(client, server, ready("tok-1")) as first:
            running = asyncio.create_task(client.run("lost"))
            await first.recv()
            await first.send({"type": "run_started", "seq": 7, "run_id": "r1", "content": "lost"})
            await first.send({"type": "ping", "seq": 8, "nonce": "n"})
            await first.recv()
            first.abort()

            second = await server.accept()
            assert second.hello["resume"] == {"token": "tok-1", "last_seq": 8}
            assert [t["name"] for t in second.hello["tools"]] == ["echo"]
            await second.send(
                {"type": "error", "seq": 0, "code": "session_expired", "message": "gone"},
                ready("tok-2"),
            )
            with pytest.raises(ConversationReset):
                await running
            assert (client.conversation_resets, resets) == (1, [0])
            again = asyncio.create_task(client.run("fresh"))
            assert (await second.recv())["content"] == "fresh"
            await second.send(
                {"type": "run_started", "seq": 2, "run_id": "r2", "content": "fresh"},
                {"type": "token", "seq": 3, "run_id": "r2", "content": "new start"},
                {"type": "complete", "seq": 4, "run_id": "r2", "reason": "done", "steps": 1},
            )
            assert (await again).text == "new start"
            assert client.resume_token == "tok-2"


async def test_a_message_lost_with_the_connection_is_sent_again_once() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        async with opened(client, server, ready("tok-1")) as first:
            running = asyncio.create_task(client.run("lost"))
            assert (await first.recv())["content"] == "lost"
            first.abort()  # read, but as if it never reached the session

            second = await server.accept()
            await second.send(ready("tok-1", resumed={"from_seq": 1, "pending_calls": []}))
            await second.ping_pong("bridge_client.sync.")
            assert (await second.recv())["content"] == "lost"
            await second.send(
                {"type": "run_started", "seq": 1, "run_id": "r1", "content": "lost"},
                {"type": "complete", "seq": 2, "run_id": "r1", "reason": "done", "steps": 1},
            )
            assert (await running).run_id == "r1"


async def test_a_message_that_did_arrive_is_not_sent_again() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        async with opened(client, server, ready("tok-1")) as first:
            running = asyncio.create_task(client.run("kept"))
            await first.recv()
            first.abort()

            second = await server.accept()
            await second.send(
                ready("tok-1", resumed={"from_seq": 1, "pending_calls": []}),
                {"type": "run_started", "seq": 1, "run_id": "r1", "content": "kept"},
            )
            await second.ping_pong("bridge_client.sync.")
            await second.send(
                {"type": "token", "seq": 2, "run_id": "r1", "content": "once"},
                {"type": "complete", "seq": 3, "run_id": "r1", "reason": "done", "steps": 1},
            )
            assert (await running).text == "once"
            following = asyncio.create_task(client.send("next"))
            assert (await second.recv())["content"] == "next"  # not "kept" a second time
            await following


async def test_a_silent_link_is_declared_dead_and_resumed() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        quick = ready("tok-1", heartbeat_interval_ms=100, heartbeat_timeout_ms=100)
        async with opened(client, server, quick) as first:
            await first.send({"type": "token", "seq": 1, "run_id": "r0", "content": "x"})
            # From here on the server says nothing and keeps the socket open: half-open.
            second = await server.accept()
            assert second.hello["resume"] == {"token": "tok-1", "last_seq": 1}
            assert (client.dead_links, client.reconnects) == (1, 1)
            await second.send(ready("tok-1", resumed={"from_seq": 2, "pending_calls": []}))


@pytest.mark.parametrize("code", [4401, 4403, 4409, 1008, 1009, 1000])
async def test_no_reconnect_after_a_final_close(code: int) -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        async with opened(client, server, ready()) as peer:
            await peer.ws.close(code)
            with pytest.raises(ConnectionError):
                while True:
                    await client.next_event()
            assert client.close_code == code
            assert (client.reconnects, server.connections) == (0, 1)


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013, 4408, None])
async def test_reconnect_after_a_transient_close(code: int | None) -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        async with opened(client, server, ready("tok-1")) as peer:
            if code is None:
                peer.abort()
            else:
                await peer.ws.close(code)
            second = await server.accept()
            assert second.hello["resume"]["token"] == "tok-1"
            await second.send(ready("tok-1", resumed={"from_seq": 1, "pending_calls": []}))
            assert (await client.wait_for("ready"))["resumed"]["from_seq"] == 1
            await client.send_json({"type": "message", "content": "up"})
            assert (await second.recv())["content"] == "up"


async def test_bye_leaves_for_good() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url)
        async with opened(client, server, ready()) as peer:
            leaving = asyncio.create_task(client.bye())
            assert await peer.recv() == {"type": "bye"}
            await peer.ws.close(1000)
            await leaving
            assert server.connections == 1
            with pytest.raises(ConnectionError):
                await client.send("too late")


async def test_reconnect_false_ends_with_the_first_close() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, reconnect=False)
        async with opened(client, server, ready()) as peer:
            peer.abort()
            with pytest.raises(ConnectionError):
                await client.wait_for("never")
            assert server.connections == 1


def test_backoff_starts_at_once_doubles_with_jitter_and_is_capped() -> None:
    assert backoff_delay(0, base_s=0.1, cap_s=5) == 0
    assert backoff_delay(1, base_s=0.1, cap_s=5, rand=lambda: 0.0) == pytest.approx(0.05)
    assert backoff_delay(1, base_s=0.1, cap_s=5, rand=lambda: 1.0) == pytest.approx(0.1)
    assert backoff_delay(4, base_s=0.1, cap_s=5, rand=lambda: 1.0) == pytest.approx(0.8)
    assert backoff_delay(50, base_s=0.1, cap_s=5, rand=lambda: 1.0) == 5
    assert backoff_delay(50, base_s=0.1, cap_s=5, rand=lambda: 0.0) == 2.5


async def test_a_run_that_ended_beyond_the_replay_window_is_read_from_the_snapshot() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        async with opened(client, server, ready("tok-1")) as first:
            running = asyncio.create_task(client.run("long ago"))
            await first.recv()
            first.abort()  # run_started, its text and complete all fall out of the window

            second = await server.accept()
            await second.send(
                ready("tok-1", resumed={"from_seq": 41, "pending_calls": [], "gap": True}),
                {
                    "type": "snapshot",
                    "last_seq": 40,
                    "turns": [
                        {"role": "user", "content": "long ago", "run_id": "r1"},
                        {"role": "assistant", "content": "it ended", "run_id": "r1"},
                    ],
                    "pending_calls": [],
                },
            )
            result = await running
            assert (result.run_id, result.text, result.reason) == ("r1", "it ended", "unknown")
            assert client.last_seq == 40


async def test_a_run_still_going_after_a_gap_continues_from_the_snapshot_text() -> None:
    async with asyncio.timeout(BOUND_S), ScriptedPeerServer() as server:
        client = BridgeClient(server.url, backoff_base_s=0.01)
        async with opened(client, server, ready("tok-1")) as first:
            running = asyncio.create_task(client.run("ongoing"))
            await first.recv()
            first.abort()

            second = await server.accept()
            await second.send(
                ready("tok-1", resumed={"from_seq": 10, "pending_calls": [], "gap": True}),
                {
                    "type": "snapshot",
                    "last_seq": 9,
                    "turns": [{"role": "user", "content": "ongoing", "run_id": "r1"}],
                    "run": {"run_id": "r1", "content": "so far, "},
                    "pending_calls": [],
                },
                {"type": "token", "seq": 9, "run_id": "r1", "content": "already in the snapshot"},
                {"type": "token", "seq": 10, "run_id": "r1", "content": "then the rest"},
                {"type": "complete", "seq": 11, "run_id": "r1", "reason": "done", "steps": 1},
            )
            result = await running
            assert (result.text, result.reason) == ("so far, then the rest", "done")
