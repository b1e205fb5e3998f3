"""A WebSocket server whose every frame the test writes by hand, to drive the client through the
resume protocol's corners (a lost result, a replay with duplicates, an expired session, silence)
without depending on the bridge."""

from __future__ import annotations

import asyncio
import json
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

LIMITS = {
    "max_message_bytes": 1_048_576,
    "max_tools": 64,
    "max_schema_bytes": 32_768,
    "max_tool_timeout_ms": 300_000,
    "default_tool_timeout_ms": 30_000,
    "human_timeout_ms": 600_000,
    "progress_cap_ms": 600_000,
    "heartbeat_interval_ms": 20_000,
    "heartbeat_timeout_ms": 20_000,
    "max_steps": 8,
    "resume_grace_ms": 60_000,
}


def ready(
    token: str = "tok-1",
    *,
    resumed: dict[str, Any] | None = None,
    **limits: int,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "ready",
        "session_id": "s",
        "protocol": 1,
        "tools": {"accepted": [], "rejected": []},
        "server_tools": [],
        "limits": {**LIMITS, **limits},
        "resume_token": token,
    }
    if resumed is not None:
        frame["resumed"] = resumed
    return frame


class Peer:
    """The server's side of one accepted connection."""

    def __init__(self, ws: ServerConnection, hello: dict[str, Any]) -> None:
        self.ws = ws
        self.hello = hello

    async def send(self, *frames: dict[str, Any]) -> None:
        for frame in frames:
            await self.ws.send(json.dumps(frame))

    async def recv(self) -> dict[str, Any]:
        """The next client frame; pings of the client's own are answered and skipped."""
        while True:
            frame: dict[str, Any] = json.loads(await self.ws.recv())
            if frame.get("type") != "ping":
                return frame
            await self.send({"type": "pong", "nonce": frame.get("nonce")})

    async def ping_pong(self, nonce: str) -> None:
        """Answer the client's next ping (its check of what reached the server)."""
        frame = json.loads(await self.ws.recv())
        assert (frame["type"], frame["nonce"].startswith(nonce)) == ("ping", True), frame
        await self.send({"type": "pong", "nonce": frame["nonce"]})

    def abort(self) -> None:
        """Drop the TCP connection with no close frame, as a network failure would."""
        self.ws.transport.abort()


class ScriptedPeerServer:
    """`async with ScriptedPeerServer() as server:` then `peer = await server.accept()`."""

    def __init__(self) -> None:
        self._accepted: asyncio.Queue[Peer] = asyncio.Queue()
        self._server: Server | None = None
        self.connections = 0

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws/agent/s"

    async def __aenter__(self) -> ScriptedPeerServer:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        hello = json.loads(await ws.recv())
        await self._accepted.put(Peer(ws, hello))
        await ws.wait_closed()

    async def accept(self) -> Peer:
        return await self._accepted.get()
