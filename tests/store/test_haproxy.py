"""The HAProxy helper: a real `haproxy` round-robins plain HTTP and WebSockets over workers,
with no stickiness, retries a worker that is gone on the next one, and holds an idle WebSocket
for the tunnel timeout rather than the HTTP one."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets

from bridge import BridgeSettings, create_app
from bridge.testing import RunningServer, ScriptedModel, call, serve_app
from bridge.testing.haproxy import HAProxy, Timeouts, haproxy_config
from bridge.testing.redis_server import MissingExecutable, find_executable
from tests.store.support import require

BOUND_S = 10


def named(name: str) -> Any:
    """An ASGI app that answers every request with its own name."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = name.encode()
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def _response(reader: asyncio.StreamReader) -> tuple[int, str]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    length = next(int(h.split(":")[1]) for h in head if h.lower().startswith("content-length"))
    return status, (await reader.readexactly(length)).decode()


async def get(port: int, path: str = "/", count: int = 1) -> list[str]:
    """`count` GETs on one keep-alive connection; the bodies, in order."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    bodies = []
    try:
        for _ in range(count):
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bridge\r\n\r\n".encode())
            status, body = await _response(reader)
            assert status == 200, body
            bodies.append(body)
    finally:
        writer.close()
        await writer.wait_closed()
    return bodies


def alternates(names: list[str], of: set[str]) -> bool:
    return set(names) == of and all(a != b for a, b in itertools.pairwise(names))


async def start(proxy: HAProxy) -> HAProxy:
    await asyncio.to_thread(require, proxy.start)
    return proxy


def test_the_config_is_valid_for_the_installed_haproxy(tmp_path: Any) -> None:
    config = haproxy_config(
        [("127.0.0.1", 8001), ("::1", 8002)], bind_port=8000, check_path="/healthz"
    )
    assert "balance roundrobin" in config and "timeout tunnel 3600000ms" in config
    for sticky in ("cookie", "stick", "balance source", "prefer-last-server", "httpclose"):
        assert sticky not in config
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    executable = require(lambda: find_executable("haproxy", "haproxy"))
    checked = subprocess.run(
        [executable, "-c", "-f", str(path)], capture_output=True, text=True, timeout=BOUND_S
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_missing_executable_says_what_to_install() -> None:
    with pytest.raises(MissingExecutable, match="apt-get install no-such-package"):
        find_executable("no-such-program-here", "no-such-package")
    # and the tests fail on it, with that message, rather than skip
    with pytest.raises(pytest.fail.Exception, match="no-such-package"):
        require(lambda: find_executable("no-such-program-here", "no-such-package"))


async def test_requests_alternate_between_workers_on_new_and_kept_connections() -> None:
    async with (
        serve_app(named("a")) as a,
        serve_app(named("b")) as b,
        asyncio.timeout(BOUND_S),
    ):
        proxy = await start(HAProxy([a.port, b.port]))
        try:
            fresh = [body for _ in range(8) for body in await get(proxy.port)]
            kept = await get(proxy.port, count=8)
        finally:
            await asyncio.to_thread(proxy.close)
    assert alternates(fresh, {"a", "b"}), fresh
    # A kept-alive client connection is not pinned either: each request is balanced anew.
    assert alternates(kept, {"a", "b"}), kept


async def test_a_worker_that_is_gone_costs_the_client_nothing() -> None:
    async with serve_app(named("a")) as a, asyncio.timeout(BOUND_S):
        async with serve_app(named("b")) as b:
            proxy = await start(HAProxy([a.port, b.port]))
        # b stopped: its turns are refused and retried on a.
        try:
            bodies = [body for _ in range(6) for body in await get(proxy.port)]
        finally:
            await asyncio.to_thread(proxy.close)
    assert bodies == ["a"] * 6


async def _recv(ws: Any) -> dict[str, Any]:
    return dict(json.loads(await ws.recv()))


async def _hello(ws: Any) -> dict[str, Any]:
    tool = {"name": "pick_colour", "parameters": {"type": "object"}}
    await ws.send(json.dumps({"type": "hello", "protocol": 1, "tools": [tool]}))
    return await _recv(ws)


async def _run(ws: Any, text: str) -> list[dict[str, Any]]:
    await ws.send(json.dumps({"type": "message", "content": text}))
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["type"] != "complete":
        frames.append(await _recv(ws))
        if frames[-1]["type"] == "tool_request":
            answer = {"type": "tool_response", "id": frames[-1]["id"], "result": "teal"}
            await ws.send(json.dumps(answer))
    return frames


def bridge(name: str) -> Any:
    steps: list[list[Any]] = []
    for _ in range(2):
        steps += [[f"{name} asks. ", call("pick_colour")], [f"{name}: teal."]]
    return create_app(BridgeSettings(), model=ScriptedModel(steps))


@pytest.fixture
async def two_bridges() -> AsyncIterator[tuple[Any, Any, RunningServer, RunningServer]]:
    first, second = bridge("first"), bridge("second")
    async with serve_app(first) as a, serve_app(second) as b:
        yield first, second, a, b


async def test_websockets_reach_the_real_bridge_and_alternate(
    two_bridges: tuple[Any, Any, RunningServer, RunningServer],
) -> None:
    first, second, a, b = two_bridges
    proxy = await start(HAProxy([a.port, b.port], check_path="/healthz"))
    answers = []
    try:
        async with asyncio.timeout(BOUND_S):
            for n in range(4):
                async with websockets.connect(proxy.ws_url(f"via-lb-{n}")) as ws:
                    assert (await _hello(ws))["type"] == "ready"
                    frames = await _run(ws, "which colour?")
                answers.append("".join(f["content"] for f in frames if f["type"] == "token"))
                kinds = [f["type"] for f in frames]
                assert "tool_request" in kinds and "tool_result" in kinds
    finally:
        await asyncio.to_thread(proxy.close)
    hubs = [first.state.bridge.hub, second.state.bridge.hub]
    served = [
        next(i for i, hub in enumerate(hubs) if hub.runtime(f"via-lb-{n}") is not None)
        for n in range(4)
    ]
    assert served in ([0, 1, 0, 1], [1, 0, 1, 0])
    assert {answer.split()[0] for answer in answers} == {"first", "second"}


async def test_an_idle_websocket_lives_for_the_tunnel_timeout(
    two_bridges: tuple[Any, Any, RunningServer, RunningServer],
) -> None:
    _, _, a, b = two_bridges
    # HTTP inactivity would end it after 100 ms; as a tunnel it gets 600 ms.
    timeouts = Timeouts(client=100, server=100, tunnel=600, http_request=1_000)
    proxy = await start(HAProxy([a.port, b.port], timeouts=timeouts))
    try:
        async with asyncio.timeout(BOUND_S):
            async with websockets.connect(proxy.ws_url("idle")) as ws:
                assert (await _hello(ws))["type"] == "ready"
                idle_from = time.monotonic()
                # Nothing is sent either way: HAProxy ends the tunnel, and that is awaited.
                await ws.wait_closed()
                idle_for = time.monotonic() - idle_from
    finally:
        await asyncio.to_thread(proxy.close)
    assert 0.5 <= idle_for < 5, idle_for
