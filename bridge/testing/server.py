"""Run an ASGI app under real uvicorn on a free loopback port, inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from bridge.server.transport import uvicorn_options

__all__ = ["RunningServer", "serve_app"]


@dataclass(frozen=True, slots=True)
class RunningServer:
    host: str
    port: int
    server: uvicorn.Server

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, session_id: str) -> str:
        return f"ws://{self.host}:{self.port}/ws/agent/{session_id}"


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, *, host: str = "127.0.0.1", max_message_bytes: int = 1_048_576, **config: Any
) -> AsyncIterator[RunningServer]:
    """Yield once the port is listening (the socket is bound before uvicorn starts, so a client
    may connect at once and wait in the backlog).

    A bridge app (`create_app`) is served with the same uvicorn options as `agent-bridge serve`,
    its transport deadlines included; any other app with uvicorn's own."""
    # Said to be TCP, so asyncio turns Nagle off on the connections it accepts (with protocol
    # 0 it leaves it on, and every small frame waits for the client's delayed ACK).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(2048)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    options: dict[str, Any] = {
        "log_level": "warning",
        "ws_max_size": max_message_bytes + 1024,
        "ws_ping_interval": None,
        "ws_per_message_deflate": False,
        "lifespan": "off",
    }
    bridge = getattr(getattr(app, "state", None), "bridge", None)
    if bridge is not None:
        settings = bridge.settings
        options.update(
            uvicorn_options(settings.connection_limits(), compression=settings.compression)
        )
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield RunningServer(host, port, server)
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(10):
                await task
        except TimeoutError:
            task.cancel()
        sock.close()
