"""The fault proxy over real loopback sockets: an echo server, and the bridge under uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from bridge.testing import FaultProxy, ScriptedModel, call
from tests.conftest import StartBridge

BOUND_S = 10
# Only to show that nothing arrives: success never waits for it.
QUIET_S = 0.3


@dataclass
class Peer:
    """What the echo server saw on one connection: every byte, then how it ended."""

    received: bytearray = field(default_factory=bytearray)
    ended: asyncio.Future[str] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class Echo:
    host: str
    port: int
    peers: list[Peer]
    arrived: asyncio.Event


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[Echo]:
    peers: list[Peer] = []
    arrived = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = Peer()
        peers.append(peer)
        how = "eof"
        try:
            while data := await reader.read(65_536):
                peer.received += data
                arrived.set()
                writer.write(data)
                await writer.drain()
        except ConnectionResetError:
            how = "reset"
        finally:
            peer.ended.set_result(how)
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield Echo("127.0.0.1", server.sockets[0].getsockname()[1], peers, arrived)


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    async with asyncio.timeout(BOUND_S):
        return await reader.readexactly(size)


async def read_until_closed(reader: asyncio.StreamReader) -> tuple[bytes, str]:
    """Everything that arrives, and whether the stream ended with a reset or a plain EOF."""
    got = bytearray()
    async with asyncio.timeout(BOUND_S):
        try:
            while data := await reader.read(65_536):
                got += data
        except ConnectionResetError:
            return bytes(got), "reset"
    return bytes(got), "eof"


async def assert_silent(reader: asyncio.StreamReader) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET_S):
            await reader.read(1)


def proxy_tasks() -> list[asyncio.Task[Any]]:
    names = ("FaultProxy.", "ProxyConnection.")
    return [
        t
        for t in asyncio.all_tasks()
        if getattr(t.get_coro(), "__qualname__", "").startswith(names) and not t.done()
    ]


async def test_forwards_both_ways_in_order_and_counts() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, so reads and writes are split many ways
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        streams = [await asyncio.open_connection(proxy.host, proxy.port) for _ in range(2)]
        for reader, writer in streams:
            writer.write(payload)
            assert await read_exactly(reader, len(payload)) == payload
            writer.close()
        first = await proxy.connection(0)
        async with asyncio.timeout(BOUND_S):
            await first.closed.wait()
        assert (proxy.accepted, proxy.cuts) == (2, 0)
        assert proxy.bytes_up == proxy.bytes_down == 2 * len(payload)
        assert (first.bytes_up, first.bytes_down) == (len(payload), len(payload))
        assert await echo.peers[0].ended == "eof"


async def test_cut_resets_both_peers_at_once() -> None:
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"hello")
        assert await read_exactly(reader, 5) == b"hello"
        proxy.cut()
        assert await read_until_closed(reader) == (b"", "reset")
        async with asyncio.timeout(BOUND_S):
            assert await echo.peers[0].ended == "reset"
        assert proxy.cuts == 1 and proxy.cut_log[0].reason == "manual"
        assert (proxy.cut_log[0].bytes_up, proxy.cut_log[0].bytes_down) == (5, 5)
        writer.close()


async def test_cut_at_lets_exactly_n_bytes_through() -> None:
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        trigger = proxy.cut_at(1000, "up")
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"a" * 600)
        assert await read_exactly(reader, 600) == b"a" * 600
        writer.write(b"b" * 600)
        record = await trigger.wait(BOUND_S)
        assert (record.connection, record.reason, record.bytes_up) == (0, "bytes up", 1000)
        async with asyncio.timeout(BOUND_S):
            assert await echo.peers[0].ended == "reset"
        assert echo.peers[0].received == b"a" * 600 + b"b" * 400
        got, how = await read_until_closed(reader)
        assert how == "reset" and len(got) <= 400
        writer.close()


@pytest.mark.parametrize(
    ("where", "delivered"), [("before", b"one MA"), ("after", b"one MARK! two")]
)
async def test_cut_on_a_pattern_in_the_servers_bytes(where: Any, delivered: bytes) -> None:
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        trigger = proxy.cut_on(b"MARK!", "down", where=where)
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        # The pattern straddles two reads: "before" still keeps all of its second half back.
        writer.write(b"one MA")
        assert await read_exactly(reader, 6) == b"one MA"
        writer.write(b"RK! two")
        record = await trigger.wait(BOUND_S)
        got, how = await read_until_closed(reader)
        assert how == "reset" and b"one MA" + got == delivered
        assert record.bytes_down == len(delivered) and trigger.spent
        writer.close()


async def test_after_reply_cuts_once_the_clients_answer_reached_the_server() -> None:
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        trigger = proxy.cut_on(b"question?", "down", where="after_reply")
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"question?")
        assert await read_exactly(reader, 9) == b"question?"
        assert not trigger.fired.is_set()
        writer.write(b"answer")
        record = await trigger.wait(BOUND_S)
        assert record.reason == "pattern down after_reply" and record.bytes_up == 15
        async with asyncio.timeout(BOUND_S):
            await echo.peers[0].ended
        assert echo.peers[0].received == b"question?answer"
        writer.close()


async def test_armed_cuts_fire_once_and_spare_later_connections() -> None:
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        proxy.cut_on(b"x", "down")
        for expected in ("reset", "echo"):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"x")
            if expected == "reset":
                assert await read_until_closed(reader) == (b"", "reset")
            else:
                assert await read_exactly(reader, 1) == b"x"
            writer.close()
        assert proxy.cuts == 1


async def test_stall_holds_bytes_and_resume_delivers_all_in_order() -> None:
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        connection = await proxy.connection(0)
        connection.stall("down")
        parts = [f"part {i};".encode() for i in range(50)]
        for part in parts:
            writer.write(part)
        await connection.wait_forwarded("up", sum(map(len, parts)), BOUND_S)
        await assert_silent(reader)
        assert connection.bytes_down == 0
        connection.resume()
        assert await read_exactly(reader, sum(map(len, parts))) == b"".join(parts)
        proxy.stall()  # both ways now: the server does not get the next bytes either
        writer.write(b"late")
        await assert_silent(reader)
        assert bytes(echo.peers[0].received).endswith(b"part 49;")
        proxy.resume()
        assert await read_exactly(reader, 4) == b"late"
        writer.close()


async def test_half_open_is_silent_both_ways_and_never_closes() -> None:
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"ping")
        assert await read_exactly(reader, 4) == b"ping"
        proxy.half_open()
        proxy.resume()  # no way back from half-open
        writer.write(b"lost")
        await assert_silent(reader)
        writer.close()  # the client gives up: the server is never told
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(QUIET_S):
                await asyncio.shield(echo.peers[0].ended)
        assert bytes(echo.peers[0].received) == b"ping"
        assert proxy.cuts == 0
    async with asyncio.timeout(BOUND_S):
        assert await echo.peers[0].ended in ("eof", "reset")


async def chaos(seed: int) -> list[tuple[int, str, int, int]]:
    """Request-answer traffic with reconnects; the cut points depend only on the seed."""
    async with echo_server() as echo, FaultProxy(echo.host, echo.port) as proxy:
        proxy.random_cuts(mean_bytes=700, seed=seed)
        while proxy.cuts < 8:
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            try:
                for i in range(40):
                    message = bytes([65 + i % 26]) * 100
                    writer.write(message)
                    assert await read_exactly(reader, 100) == message
            except (asyncio.IncompleteReadError, ConnectionResetError):
                pass
            writer.close()
        return [(r.connection, r.reason, r.bytes_up, r.bytes_down) for r in proxy.cut_log]


async def test_random_cuts_are_reproducible_by_seed() -> None:
    first, again, other = await chaos(7), await chaos(7), await chaos(8)
    assert first == again
    assert first != other
    assert {reason for _, reason, _, _ in first + other} == {"random up", "random down"}
    # Cut points fall inside messages, not only at their edges.
    assert any(up % 100 or down % 100 for _, _, up, down in first)


async def test_closing_ends_every_socket_and_task_in_bounded_time() -> None:
    async with echo_server() as echo:
        proxy = FaultProxy(echo.host, echo.port, timeout_s=2)
        async with proxy:
            clients = [await asyncio.open_connection(proxy.host, proxy.port) for _ in range(3)]
            for _, writer in clients:
                writer.write(b"x")
            for reader, _ in clients:
                assert await read_exactly(reader, 1) == b"x"
            (await proxy.connection(1)).stall()
            (await proxy.connection(2)).half_open()
            assert len(proxy_tasks()) >= 3
        assert proxy_tasks() == []
        for reader, writer in clients:
            _, how = await read_until_closed(reader)
            assert how in ("eof", "reset")
            writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection(proxy.host, proxy.port)


# The bridge itself, through uvicorn, with a real WebSocket client.


async def open_ws(proxy: FaultProxy, session: str) -> ClientConnection:
    ws = await connect(proxy.ws_url(session), open_timeout=BOUND_S, ping_interval=None)
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "tools": []}))
    assert (await receive(ws))["type"] == "ready"
    return ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(BOUND_S):
        frame = json.loads(await ws.recv())
    assert isinstance(frame, dict)
    return frame


async def ping(ws: ClientConnection, nonce: str) -> None:
    await ws.send(json.dumps({"type": "ping", "nonce": nonce}))


async def assert_closed_without_close_frame(ws: ClientConnection) -> None:
    with pytest.raises(websockets.ConnectionClosedError) as closed:
        async with asyncio.timeout(BOUND_S):
            while True:
                await ws.recv()
    assert closed.value.rcvd is None


async def test_bridge_through_the_proxy_and_a_cut(start_bridge: StartBridge) -> None:
    async with start_bridge() as server, FaultProxy(server.host, server.port) as proxy:
        ws = await open_ws(proxy, "through")
        await ping(ws, "n1")
        pong = await receive(ws)
        assert (pong["type"], pong["nonce"]) == ("pong", "n1")
        proxy.cut()
        await assert_closed_without_close_frame(ws)
        assert proxy.accepted == 1 and proxy.cuts == 1 and proxy.bytes_down > 0


async def test_bridge_tool_result_cut_before_it_reaches_the_client(
    start_bridge: StartBridge,
) -> None:
    model = ScriptedModel([[call("echo", {"text": "hi"})], ["done"]])
    async with start_bridge(model=model) as server, FaultProxy(server.host, server.port) as proxy:
        trigger = proxy.cut_on(b'"tool_result"', "down")
        ws = await connect(proxy.ws_url("tool-cut"), open_timeout=BOUND_S, ping_interval=None)
        tool = {"name": "echo", "description": "Echo.", "parameters": {"type": "object"}}
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "tools": [tool]}))
        assert (await receive(ws))["type"] == "ready"
        await ws.send(json.dumps({"type": "message", "content": "go"}))
        while (request := await receive(ws))["type"] != "tool_request":
            pass
        answer = {"type": "tool_response", "id": request["id"], "status": "ok", "data": "hi"}
        await ws.send(json.dumps(answer))
        await assert_closed_without_close_frame(ws)
        record = await trigger.wait(BOUND_S)
        assert record.reason == "pattern down before"


async def test_bridge_stall_then_resume_and_half_open(start_bridge: StartBridge) -> None:
    async with start_bridge() as server, FaultProxy(server.host, server.port) as proxy:
        ws = await open_ws(proxy, "stall")
        connection = await proxy.connection(0)
        connection.stall("down")
        sent = connection.bytes_up
        for i in range(5):
            await ping(ws, f"n{i}")
        # A masked text frame under 126 bytes has a 6-byte header: all five pings are through.
        frame = 6 + len(json.dumps({"type": "ping", "nonce": "n0"}))
        await connection.wait_forwarded("up", sent + 5 * frame, BOUND_S)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(QUIET_S):
                await ws.recv()
        connection.resume()
        assert [(await receive(ws))["nonce"] for _ in range(5)] == [f"n{i}" for i in range(5)]

        proxy.half_open()
        await ping(ws, "lost")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(QUIET_S):
                await ws.recv()
        assert ws.state is websockets.State.OPEN
        ws.close_timeout = QUIET_S
        await ws.close()  # the close handshake is lost too
        assert ws.protocol.close_rcvd is None and connection.bytes_up == sent + 5 * frame
