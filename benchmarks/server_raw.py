"""Baseline: a raw `websockets` server that echoes every frame, the floor of a round trip."""

from __future__ import annotations

import asyncio

from common import announce, bound_socket, raise_fd_limit
from websockets.asyncio.server import ServerConnection, serve


async def echo(connection: ServerConnection) -> None:
    async for message in connection:
        await connection.send(message)


async def main() -> None:
    sock = bound_socket()
    async with serve(echo, sock=sock, compression=None, ping_interval=None, max_size=2**20):
        announce(sock)
        await asyncio.Future()


if __name__ == "__main__":
    raise_fd_limit()
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
