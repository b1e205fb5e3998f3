"""Three real workers on one Redis behind a real nginx with the configuration docs/scale-out.md
shows (`bridge.testing.nginx`): tool calls through the Python client survive seeded random
cuts, each reconnect landing on the next worker; a WebSocket goes through the upgrade, and an
idle one lives between heartbeats for as long as `proxy_read_timeout` allows and no longer."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import websockets

from bridge.limits import ConnectionLimits
from bridge.redis_store import RedisStore
from bridge.testing import FaultProxy, OpenAIServer
from bridge.testing.nginx import Nginx, Timeouts, nginx_config
from bridge.testing.redis_server import RedisServer
from tests.scaleout.cuts import CutRuns
from tests.scaleout.support import (
    Decider,
    Worker,
    start_workers,
    worker_env,
)
from tests.store.support import require

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scale-out.md"
# The example in the docs: three workers on 8001-8003, nginx on 8000.
EXAMPLE_PORTS = (8001, 8002, 8003)
BOUND_S = 30
# A heartbeat short enough to watch several go by; the read timeouts below are set around it.
HEARTBEAT_S = 0.6
KEPT_PINGS = 5


@contextlib.asynccontextmanager
async def workers(
    redis: RedisServer, cluster: str, model_url: str | None, **settings: str
) -> AsyncIterator[list[Worker]]:
    started = await start_workers(3, worker_env(redis.url, cluster, **settings), model_url)
    try:
        yield started
    finally:
        for worker in started:
            await asyncio.to_thread(worker.stop)


@contextlib.asynccontextmanager
async def nginx(ports: Sequence[int], timeouts: Timeouts | None = None) -> AsyncIterator[Nginx]:
    balancer = Nginx(ports, timeouts=timeouts)
    # A missing nginx fails the test with what to install, never skips it.
    await asyncio.to_thread(require, balancer.start)
    try:
        yield balancer
    finally:
        await asyncio.to_thread(balancer.close)


def directives(config: str) -> list[tuple[str, str]]:
    """Every directive of an nginx configuration, in order, as (name, value); no comments."""
    found: list[tuple[str, str]] = []
    for line in config.splitlines():
        words = line.split("#", 1)[0].strip().rstrip(";{}").split(maxsplit=1)
        if words:
            found.append((words[0], words[1].strip() if len(words) > 1 else ""))
    return found


def websocket_location(config: str) -> dict[str, list[str]]:
    """The directives of `location /ws/`: name -> every value it is given."""
    body = config.split("location /ws/ {", 1)[1].split("}", 1)[0]
    found: dict[str, list[str]] = {}
    for name, value in directives(body):
        found.setdefault(name, []).append(value)
    return found


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s)", duration)
    assert match is not None, duration
    return int(match[1]) / (1000 if match[2] == "ms" else 1)


def test_the_docs_show_the_config_the_tests_run() -> None:
    documented = re.findall(r"^```nginx\n(.*?)^```$", DOCS.read_text("utf-8"), re.S | re.M)
    rendered = nginx_config(
        [("127.0.0.1", p) for p in EXAMPLE_PORTS], bind_host="0.0.0.0", bind_port=8000
    )
    assert documented == [rendered]


def test_round_robin_upgrade_headers_and_timeouts_past_the_heartbeat() -> None:
    config = nginx_config([("127.0.0.1", p) for p in EXAMPLE_PORTS], bind_port=8000)
    names = {name for name, _ in directives(config)}
    # Round robin is what is left when no other method is named.
    assert not names & {"ip_hash", "hash", "sticky", "least_conn", "random"}, names
    ws = websocket_location(config)
    assert ws["proxy_set_header"][:2] == ["Upgrade $http_upgrade", "Connection $connection_upgrade"]
    assert ws["proxy_http_version"] == ["1.1"] and ws["proxy_buffering"] == ["off"]
    assert ws["proxy_next_upstream"] == ["error timeout"]
    assert seconds(ws["proxy_connect_timeout"][0]) <= 5
    # The longest silence of a live session: a heartbeat's interval, then its wait for the pong.
    limits = ConnectionLimits()
    silence_s = limits.heartbeat_interval_s + limits.heartbeat_timeout_s
    assert seconds(ws["proxy_read_timeout"][0]) > silence_s
    assert seconds(ws["proxy_send_timeout"][0]) > silence_s


async def test_tool_calls_with_random_cuts_through_nginx_over_three_workers(
    redis: RedisServer, model: OpenAIServer, cluster_name: str
) -> None:
    runs = CutRuns(sessions=4, runs=2, calls=10)  # 4 x 2 x 10 = 80 calls
    model.script = Decider(model, runs.decide)
    store = await RedisStore.connect(redis.url, cluster_name)
    async with (
        workers(redis, cluster_name, model.base_url) as started,
        nginx([w.port for w in started]) as balancer,
        FaultProxy(balancer.host, balancer.port) as proxy,
    ):
        pids = {w.pid: w.number for w in started}
        async with asyncio.timeout(BOUND_S):
            await runs.drive(proxy, store, pids)
        logs = "\n".join(f"--- {w.name} ---\n{w.output()[-3000:]}" for w in started)
        workers_alive = [w.alive for w in started]
        nginx_log = balancer.log_tail(40)
        cuts = proxy.cuts
    await store.close()

    assert all(workers_alive), logs
    runs.check(model, cuts, at_least=15, context=nginx_log)


@dataclass
class Idle:
    """What an idle session saw: pings answered, and how its connection ended, if it did."""

    server: str
    pings: int = 0
    closed_code: int | None = None
    idle_s: float = 0.0


async def idle_session(url: str, pings: int) -> Idle:
    """Connect, say hello, then only answer the bridge's heartbeat: until `pings` were answered
    (then leave with `bye`) or the connection ends."""
    # No pings of the WebSocket library's own: the heartbeat is the only traffic.
    async with websockets.connect(url, ping_interval=None, compression=None) as ws:
        assert ws.response is not None and ws.response.status_code == 101
        seen = Idle(server=ws.response.headers.get("Server", ""))
        await ws.send(json.dumps({"type": "hello", "protocol": 1, "tools": []}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        assert ready["limits"]["heartbeat_interval_ms"] == int(HEARTBEAT_S * 1000), ready
        since = time.monotonic()
        try:
            while seen.pings < pings:
                frame = json.loads(await ws.recv())
                if frame["type"] == "ping":
                    seen.pings += 1
                    await ws.send(json.dumps({"type": "pong", "nonce": frame.get("nonce")}))
            await ws.send(json.dumps({"type": "bye"}))
        except websockets.ConnectionClosed as closed:
            seen.closed_code = closed.rcvd.code if closed.rcvd is not None else 1006
        seen.idle_s = time.monotonic() - since
    return seen


async def test_the_upgrade_passes_and_an_idle_websocket_lives_between_heartbeats(
    redis: RedisServer, cluster_name: str
) -> None:
    # The defaults' read timeout against a 20 s heartbeat is checked above; here the same
    # relation, scaled down: a read timeout of 2.5 heartbeats, and one of half a heartbeat.
    outlasting = Timeouts(websocket_read=int(2.5 * HEARTBEAT_S * 1000))
    too_short = Timeouts(websocket_read=int(0.5 * HEARTBEAT_S * 1000))
    async with (
        workers(redis, cluster_name, None, BRIDGE_HEARTBEAT_INTERVAL_S=str(HEARTBEAT_S)) as started,
        nginx([w.port for w in started], outlasting) as kept_by,
        nginx([w.port for w in started], too_short) as cut_by,
        asyncio.timeout(BOUND_S),
    ):
        kept, cut = await asyncio.gather(
            idle_session(kept_by.ws_url(f"idle-{secrets.token_hex(4)}"), KEPT_PINGS),
            idle_session(cut_by.ws_url(f"idle-{secrets.token_hex(4)}"), KEPT_PINGS),
        )
    # The handshake went through nginx (its name on the 101) to a bridge, which sent `ready`.
    assert kept.server.startswith("nginx") and cut.server.startswith("nginx"), (kept, cut)
    # Nothing but heartbeats for well over the read timeout, and the connection lived.
    assert kept.pings == KEPT_PINGS and kept.closed_code is None, kept
    assert kept.idle_s > 1.5 * outlasting.websocket_read / 1000, kept
    # With a read timeout shorter than the heartbeat, nginx drops the idle connection (no
    # close frame, 1006) before the first ping: this timeout is the one that decides.
    assert cut.pings == 0 and cut.closed_code == 1006, cut
    print(f"\nkept {kept.idle_s:.2f} s through {kept.pings} pings; cut after {cut.idle_s:.2f} s")
