"""A raw WebSocket peer for the security tests: frames as the attacker writes them, every wait
bounded, and each server frame checked against docs/protocol.schema.json as it arrives."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import websockets
from jsonschema import Draft202012Validator

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "protocol.schema.json").read_text()
)
_SERVER = Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": "#/$defs/ServerMessage"})
WAIT_S = 10.0


def schema_errors(frame: Any) -> list[str]:
    return [e.message[:200] for e in _SERVER.iter_errors(frame)]


class Peer:
    """One client connection; `frames` keeps everything the server sent, in order."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.invalid: list[tuple[dict[str, Any], list[str]]] = []

    @classmethod
    async def open(cls, url: str) -> Peer:
        ws = await asyncio.wait_for(
            websockets.connect(url, max_size=None, open_timeout=WAIT_S), WAIT_S
        )
        return cls(ws)

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), WAIT_S)

    async def send(self, frame: str | bytes | dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame) if isinstance(frame, dict) else frame)

    async def recv(self, within_s: float = WAIT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), within_s)
        frame = json.loads(raw)
        problems = schema_errors(frame)
        if problems:
            self.invalid.append((frame, problems))
        self.frames.append(frame)
        return frame

    async def recv_until(self, kind: str, within_s: float = WAIT_S) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while True:
                frame = await self.recv()
                if frame["type"] == kind:
                    return frame

    async def recv_until_after(
        self, frame: str | bytes | dict[str, Any], kind: str, within_s: float = WAIT_S
    ) -> dict[str, Any]:
        await self.send(frame)
        return await self.recv_until(kind, within_s)

    async def hello(self, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        await self.send({"type": "hello", "protocol": 1, "tools": tools or []})
        return await self.recv_until("ready")

    async def ping_s(self, nonce: str) -> float:
        """One ping's round trip; other frames that arrive meanwhile are kept."""
        start = time.perf_counter()
        await self.send({"type": "ping", "nonce": nonce})
        async with asyncio.timeout(WAIT_S):
            while True:
                frame = await self.recv()
                if frame["type"] == "pong" and frame.get("nonce") == nonce:
                    return time.perf_counter() - start


async def ping_baseline(peer: Peer, count: int = 30) -> float:
    """The median round trip of `count` pings with nothing else going on."""
    return statistics.median([await peer.ping_s(f"base{i}") for i in range(count)])


async def ping_while(peer: Peer, attack: asyncio.Task[Any]) -> list[float]:
    """Round trips of pings sent back to back for as long as `attack` runs (at least one)."""
    times = [await peer.ping_s("during0")]
    while not attack.done():
        times.append(await peer.ping_s(f"during{len(times)}"))
    return times


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def tracebacks(self) -> list[str]:
        return [r.getMessage()[:300] for r in self.records if r.exc_info]

    def errors(self) -> list[str]:
        return [r.getMessage()[:300] for r in self.records if r.levelno >= logging.ERROR]


@contextmanager
def captured_logs() -> Iterator[LogCapture]:
    handler = LogCapture()
    loggers = [logging.getLogger(n) for n in ("bridge", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
