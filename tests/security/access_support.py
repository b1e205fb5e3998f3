"""Raw clients for the access tests: a handshake with the headers an attacker picks, HTTP
requests with theirs, and the close code a refused socket gets. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

WAIT_S = 10.0
Frame = dict[str, Any]


async def open_ws(
    url: str, *, origin: str | None = None, headers: Mapping[str, str] | None = None
) -> ClientConnection:
    connect = websockets.connect(
        url,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=dict(headers or {}),
        open_timeout=WAIT_S,
        close_timeout=WAIT_S,
        proxy=None,
        max_size=None,
    )
    return await asyncio.wait_for(connect, WAIT_S)


async def send(ws: ClientConnection, frame: Frame) -> None:
    await ws.send(json.dumps(frame))


async def recv(ws: ClientConnection) -> Frame:
    frame: Frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
    return frame


async def recv_until(ws: ClientConnection, kind: str) -> list[Frame]:
    frames = [await recv(ws)]
    while frames[-1]["type"] != kind:
        frames.append(await recv(ws))
    return frames


async def hello(ws: ClientConnection, *, resume: Frame | None = None) -> Frame:
    message: Frame = {"type": "hello", "protocol": 1, "tools": []}
    if resume is not None:
        message["resume"] = resume
    await send(ws, message)
    return await recv(ws)


async def close_code(ws: ClientConnection) -> tuple[int | None, list[Frame]]:
    """Read until the server closes: its close code, and every frame received before it."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                frames.append(json.loads(await ws.recv()))
    except websockets.ConnectionClosed as closed:
        return (None if closed.rcvd is None else closed.rcvd.code), frames


async def refused_with(
    url: str, *, origin: str | None = None, headers: Mapping[str, str] | None = None
) -> int | None:
    """The close code of a handshake the server accepts only to close it."""
    ws = await open_ws(url, origin=origin, headers=headers)
    code, frames = await close_code(ws)
    assert frames == [], frames
    return code


class Http:
    """One HTTP exchange: status, headers (lower-case names) and the body as JSON or text."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def _exchange(url: str, method: str, headers: Mapping[str, str]) -> Http:
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, method=method, headers=dict(headers), data=data)
    # No proxy from the environment: everything here is loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=WAIT_S) as response:
            return Http(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as error:
        return Http(error.code, dict(error.headers), error.read())


async def http(url: str, method: str = "GET", headers: Mapping[str, str] | None = None) -> Http:
    return await asyncio.to_thread(_exchange, url, method, headers or {})
