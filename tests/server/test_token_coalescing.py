"""Tokens coalesce into one frame only while the client is behind (a send is suspended)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.websockets import WebSocketState

from bridge.agent.outbox import Outbox
from bridge.limits import ConnectionLimits
from bridge.outbound import OutboundLog
from bridge.protocol import TokenMessage, ToolCancelMessage
from bridge.server.connection import Connection

BOUND_S = 5


class SlowSocket:
    """Stands in for the WebSocket: the first send blocks until `gate` opens."""

    client_state = WebSocketState.CONNECTED

    def __init__(self, block_first: bool) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.frames: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self._block = block_first
        self._forever = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.entered.set()
        if self._block:
            self._block = False
            await self.gate.wait()
        self.frames.append(json.loads(text))
        self.arrived.set()

    async def receive(self) -> dict[str, Any]:
        await self._forever.wait()
        return {"type": "websocket.disconnect"}

    async def close(self, code: int, reason: str) -> None:
        return None


class IdleRuntime:
    stores = False  # a server on its own: frames need no record stored before they leave

    def __init__(self) -> None:
        self.outbox = Outbox(OutboundLog(max_messages=1024, max_bytes=1 << 20), queue_size=256)

    async def handle(self, message: object) -> None:
        return None


async def _never(*_args: object) -> tuple[object, list[object]]:
    raise AssertionError("the test attaches the connection itself")


async def _left(*_args: object) -> None:
    return None


def open_connection(socket: SlowSocket) -> tuple[Connection, Outbox]:
    limits = ConnectionLimits(hello_timeout_s=BOUND_S, heartbeat_interval_s=3600)
    connection = Connection(socket, "s", limits, _never, _left)  # type: ignore[arg-type]
    runtime = IdleRuntime()
    connection.runtime = runtime  # type: ignore[assignment]
    connection._greeted.set()
    runtime.outbox.attach(None, connection.notify)
    return connection, runtime.outbox


async def frames(socket: SlowSocket, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(BOUND_S):
        while len(socket.frames) < count:
            socket.arrived.clear()
            await socket.arrived.wait()
    return socket.frames


async def test_tokens_join_one_frame_while_a_send_is_stuck() -> None:
    socket = SlowSocket(block_first=True)
    connection, outbox = open_connection(socket)
    task = asyncio.create_task(connection.run())
    await outbox.send(TokenMessage(run_id="r", content="a"))
    async with asyncio.timeout(BOUND_S):
        await socket.entered.wait()
    for text in ("b", "c", "d"):
        await outbox.send(TokenMessage(run_id="r", content=text))
    outbox.post(ToolCancelMessage(id="x", reason="cancelled"))
    await outbox.send(TokenMessage(run_id="r", content="e"))
    await outbox.send(TokenMessage(run_id="other", content="f"))
    socket.gate.set()
    sent = await frames(socket, 5)
    assert [(f["type"], f.get("content")) for f in sent] == [
        ("token", "a"),
        ("token", "bcd"),
        ("tool_cancel", None),
        ("token", "e"),
        ("token", "f"),
    ]
    assert [f["seq"] for f in sent] == [1, 2, 3, 4, 5]
    connection.finish(None)
    async with asyncio.timeout(BOUND_S):
        await task


async def test_a_client_that_keeps_up_gets_one_frame_per_token() -> None:
    socket = SlowSocket(block_first=False)
    connection, outbox = open_connection(socket)
    task = asyncio.create_task(connection.run())
    for text in ("a", "b", "c"):
        await outbox.send(TokenMessage(run_id="r", content=text))
    sent = await frames(socket, 3)
    assert [f["content"] for f in sent] == ["a", "b", "c"]
    connection.finish(None)
    async with asyncio.timeout(BOUND_S):
        await task
