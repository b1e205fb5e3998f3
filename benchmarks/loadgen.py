"""The load generator: picows clients that drive the bridge and the baselines the same way.

Run by the orchestrator as a process of its own (pinned to a core apart from the server's):

    python loadgen.py '<json spec>'

It prints one JSON line with the figures. Every scenario is bounded in count and in time. The
bridge and the baselines speak the same message shapes, so one client serves them all; the
only difference is the URL. Frames are handled in picows' callback, without a task hop, so
the client adds as little as possible to each round trip.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from common import ECHO_ARGS, FIVE_TOOLS, HOST, raise_fd_limit
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

Handler = Callable[[dict[str, Any], int], None]

_HELLO_ONE_TOOL = json.dumps({"type": "hello", "protocol": 1, "tools": [FIVE_TOOLS[0]]}).encode()
_HELLO_FIVE_TOOLS = json.dumps({"type": "hello", "protocol": 1, "tools": FIVE_TOOLS}).encode()
_DEFLATE_OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
_now = time.perf_counter_ns


def url_for(proto: str, port: int, session_id: str) -> str:
    if proto == "bridge":
        return f"ws://{HOST}:{port}/ws/agent/{session_id}"
    if proto == "echo":
        return f"ws://{HOST}:{port}/"
    return f"ws://{HOST}:{port}/ws/{session_id}"


class Client(WSListener):
    """One connection; `handler` sees every JSON message with its arrival time."""

    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.handler: Handler | None = None
        self.gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.spin_ns = 0

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            arrived = _now()
            if frame.rsv1:
                # Compressed (only idle clients offer deflate): any frame is as good as ready.
                message: dict[str, Any] = {"type": "compressed"}
            else:
                message = json.loads(frame.get_payload_as_bytes())
            if message.get("type") == "ping":
                self.send({"type": "pong", "nonce": message.get("nonce")})
            elif self.handler is not None:
                self.handler(message, arrived)
            if self.spin_ns:
                # A client that falls behind: it spends this long on every frame it reads.
                until = _now() + self.spin_ns
                while _now() < until:
                    pass
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.gone.done():
            self.gone.set_result(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, json.dumps(message).encode())

    def send_raw(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, payload)

    def close(self) -> None:
        if self.transport is not None and not self.gone.done():
            self.transport.send_close()
            self.transport.disconnect()

    async def until(self, kinds: tuple[str, ...], wait_s: float) -> dict[str, Any]:
        """Wait for the next message of one of these types (others are ignored)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def handle(message: dict[str, Any], _arrived: int) -> None:
            if message.get("type") in kinds and not future.done():
                future.set_result(message)

        self.handler = handle
        waiter = asyncio.ensure_future(asyncio.wait_for(future, wait_s))
        done, _ = await asyncio.wait([waiter, self.gone], return_when=asyncio.FIRST_COMPLETED)
        if waiter not in done:
            waiter.cancel()
            raise ConnectionError(f"disconnected while waiting for {kinds}")
        return waiter.result()


async def connect(
    proto: str,
    port: int,
    session_id: str,
    *,
    hello: bytes | None = _HELLO_ONE_TOOL,
    deflate: bool = False,
    buffer: int = 64 * 1024,
    wait_s: float = 30.0,
    rcvbuf: int = 0,
) -> Client:
    def small_receive_buffer(_url: object) -> socket.socket:
        # A small kernel buffer makes a slow reader felt at once, as over a real network,
        # instead of after megabytes of loopback buffering.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        return sock

    _, client = await ws_connect(
        Client,
        url_for(proto, port, session_id),
        extra_headers=_DEFLATE_OFFER if deflate else None,
        read_buffer_init_size=buffer,
        websocket_handshake_timeout=wait_s,
        socket_factory=small_receive_buffer if rcvbuf else None,
    )
    if not isinstance(client, Client):
        # picows hands back no listener when the server dropped the socket at once (a server
        # out of file descriptors does that).
        raise ConnectionError("the server closed the connection right after the handshake")
    if hello is not None and proto != "echo":
        client.send_raw(hello)
        # With deflate offered, whether it was agreed is the server's choice; a compressed
        # frame cannot be read here without inflating it, and any first frame means ready.
        await client.until(("ready", "compressed"), wait_s)
    return client


def percentiles(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(samples_ns)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6

    return {"count": len(ordered), "p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": at(1.0)}


# Scenarios ------------------------------------------------------------------------------------


async def sequential_calls(spec: dict[str, Any]) -> dict[str, Any]:
    """B1: one session, N sequential calls; a sample is the time from one `tool_request` to the
    next (the raw echo: one round trip of a message of the same size)."""
    proto, n, limit = spec["proto"], spec["n"], spec["time_limit"]
    client = await connect(proto, spec["port"], f"b1-{os.getpid()}")
    samples: list[int] = []
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    previous = 0
    if proto == "echo":
        payload = json.dumps({"type": "tool_response", "id": "x", "result": ECHO_ARGS}).encode()

        def on_echo(_message: dict[str, Any], arrived: int) -> None:
            nonlocal previous
            samples.append(arrived - previous)
            if len(samples) >= n:
                if not done.done():
                    done.set_result(None)
                return
            previous = _now()
            client.send_raw(payload)

        client.handler = on_echo
        started = previous = _now()
        client.send_raw(payload)
    else:

        def on_message(message: dict[str, Any], arrived: int) -> None:
            nonlocal previous
            kind = message.get("type")
            if kind == "tool_request":
                if previous:
                    samples.append(arrived - previous)
                previous = arrived
                client.send(
                    {
                        "type": "tool_response",
                        "id": message["id"],
                        "status": "ok",
                        "result": message["arguments"],
                    }
                )
            elif kind == "complete" and not done.done():
                done.set_result(None)

        client.handler = on_message
        started = _now()
        client.send({"type": "message", "content": f"calls {n}"})
    await asyncio.wait_for(done, limit)
    elapsed = (_now() - started) / 1e9
    client.close()
    return {**percentiles(samples), "calls": len(samples), "elapsed_s": elapsed}


async def token_stream(spec: dict[str, Any]) -> dict[str, Any]:
    """B2: N tokens to one client; `spin_us` makes the client spend that long on each frame."""
    proto, n, limit = spec["proto"], spec["n"], spec["time_limit"]
    client = await connect(proto, spec["port"], f"b2-{os.getpid()}", rcvbuf=spec.get("rcvbuf", 0))
    client.spin_ns = int(spec.get("spin_us", 0) * 1000)
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    chars = frames = 0
    last = 0

    def on_message(message: dict[str, Any], arrived: int) -> None:
        nonlocal chars, frames, last
        kind = message.get("type")
        if kind == "token":
            frames += 1
            chars += len(message["content"])
            last = arrived
        elif kind == "complete" and not done.done():
            done.set_result(None)

    client.handler = on_message
    started = _now()
    client.send({"type": "message", "content": f"tokens {n}"})
    finished = True
    try:
        await asyncio.wait_for(asyncio.shield(done), limit)
    except TimeoutError:
        finished = False
    tokens = chars // 4
    elapsed = ((last or _now()) - started) / 1e9
    client.close()
    return {
        "tokens": tokens,
        "frames": frames,
        "elapsed_s": elapsed,
        "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
        "tokens_per_frame": tokens / frames if frames else 0.0,
        "finished": finished,
    }


async def first_token(spec: dict[str, Any]) -> dict[str, Any]:
    """B3: from `message` sent to the first `token` received, N times in one session."""
    proto, n = spec["proto"], spec["n"]
    fresh = spec.get("fresh_session", False)
    client = await connect(proto, spec["port"], f"b3-{os.getpid()}")
    samples: list[int] = []
    deadline = time.monotonic() + spec["time_limit"]
    for index in range(n):
        if time.monotonic() > deadline:
            break
        if fresh and index:
            # A new session for every sample: a real model is sent the whole conversation,
            # which would grow with every sample and be timed as the bridge's cost.
            client.close()
            client = await connect(proto, spec["port"], f"b3-{os.getpid()}-{index}")
        loop = asyncio.get_running_loop()
        got_token: asyncio.Future[int] = loop.create_future()
        completed: asyncio.Future[None] = loop.create_future()

        def on_message(
            message: dict[str, Any],
            arrived: int,
            got_token: asyncio.Future[int] = got_token,
            completed: asyncio.Future[None] = completed,
        ) -> None:
            kind = message.get("type")
            if kind == "token" and not got_token.done():
                got_token.set_result(arrived)
            elif kind == "complete" and not completed.done():
                completed.set_result(None)

        client.handler = on_message
        sent = _now()
        client.send({"type": "message", "content": "ttft"})
        samples.append(await asyncio.wait_for(got_token, 10) - sent)
        await asyncio.wait_for(completed, 10)
    client.close()
    return percentiles(samples)


async def stop_latency(spec: dict[str, Any]) -> dict[str, Any]:
    """B8: `stop` sent to `complete{stopped}` received, mid-stream or mid-tool-call."""
    n, mode = spec["n"], spec["mode"]
    client = await connect("bridge", spec["port"], f"b8-{mode}-{os.getpid()}")
    samples: list[int] = []
    wrong = 0
    deadline = time.monotonic() + spec["time_limit"]
    trigger, command = ("token", "stream") if mode == "stream" else ("tool_request", "calls 1")
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        completed: asyncio.Future[tuple[str, int]] = loop.create_future()

        def on_message(
            message: dict[str, Any],
            arrived: int,
            started: asyncio.Future[None] = started,
            completed: asyncio.Future[tuple[str, int]] = completed,
        ) -> None:
            kind = message.get("type")
            if kind == trigger and not started.done():
                started.set_result(None)
            elif kind == "complete" and not completed.done():
                completed.set_result((message.get("reason", ""), arrived))

        client.handler = on_message
        client.send({"type": "message", "content": command})
        await asyncio.wait_for(started, 10)
        sent = _now()
        client.send({"type": "stop"})
        reason, arrived = await asyncio.wait_for(completed, 10)
        if reason != "stopped":
            wrong += 1
        samples.append(arrived - sent)
    client.close()
    return {**percentiles(samples), "not_stopped": wrong}


class _Caller:
    """Drives one session of B6/B7: a run of many sequential calls, answered at once
    (saturate) or after 125-375 ms (paced: the tool takes that long). A sample is the time
    from sending a `tool_response` to receiving the next `tool_request`: everything the
    server does for one call, with the client's own time left out."""

    def __init__(self, client: Client, load: _Load) -> None:
        self.client = client
        self.load = load
        self.answered = 0
        self.next_at = 0.0
        self.call_id = ""
        self.arguments: Any = None
        self.done = False
        client.handler = self.handle

    def start(self) -> None:
        self.client.send({"type": "message", "content": "calls 100000000"})

    def answer(self) -> None:
        if self.load.stopping or not self.call_id:
            return
        self.client.send(
            {"type": "tool_response", "id": self.call_id, "status": "ok", "result": self.arguments}
        )
        self.call_id = ""
        self.answered = _now()

    def handle(self, message: dict[str, Any], arrived: int) -> None:
        kind = message.get("type")
        load = self.load
        if kind == "tool_request":
            if self.answered and load.window_start <= self.answered and arrived <= load.window_end:
                load.samples.append(arrived - self.answered)
            self.call_id, self.arguments = message["id"], message["arguments"]
            if load.stopping:
                # Python 3.11's wait_for can swallow a cancel that races with the answer
                # (the hand-written pattern then asks for the next call): say stop again.
                self.client.send({"type": "stop"})
                return
            if load.saturate:
                self.answer()
                return
            loop = asyncio.get_running_loop()
            self.next_at = max(self.next_at, loop.time())
            loop.call_at(self.next_at, self.answer)
            self.next_at += load.rng.uniform(0.125, 0.375) * load.pace_scale
        elif kind == "complete":
            self.done = True
            if message.get("reason") not in ("stopped", "done"):
                load.errors += 1
            load.finished += 1
            if load.finished >= load.sessions and not load.drained.done():
                load.drained.set_result(None)
        elif kind == "error" and not load.stopping:
            # While stopping, a repeated stop may find the run already over; that is not one.
            load.errors += 1


class _Load:
    def __init__(self, spec: dict[str, Any], sessions: int) -> None:
        self.saturate = spec["mode"] == "saturate"
        # Stretches the 125-375 ms pacing, to load a server by a given share of its capacity.
        self.pace_scale = float(spec.get("pace_scale", 1.0))
        self.rng = random.Random(spec.get("seed", 1))
        self.samples: list[int] = []
        self.stopping = False
        self.sessions = sessions
        self.finished = 0
        self.errors = 0
        self.drained: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        start = _now() + int(spec["warmup_s"] * 1e9)
        self.window_start = start
        self.window_end = start + int(spec["duration_s"] * 1e9)


async def many_sessions(spec: dict[str, Any]) -> dict[str, Any]:
    """B6/B7: S sessions, each in one long run of sequential calls, for a bounded time."""
    clients = await _connect_many(
        spec["proto"], spec["port"], spec["sessions"], prefix=f"s{os.getpid()}"
    )
    load = _Load(spec, len(clients))
    callers = [_Caller(client, load) for client in clients]
    loop = asyncio.get_running_loop()
    base = loop.time()
    for caller in callers:
        # Paced sessions answer their first call at a random offset, so they do not march
        # in step.
        caller.next_at = base + load.rng.uniform(0.0, 0.375) * load.pace_scale
        caller.start()
    await asyncio.sleep(spec["warmup_s"] + spec["duration_s"])
    load.stopping = True
    for caller in callers:
        if not caller.done:
            caller.client.send({"type": "stop"})
    try:
        await asyncio.wait_for(load.drained, 10)
    except TimeoutError:
        load.errors += load.sessions - load.finished
    for client in clients:
        client.close()
    return {
        **percentiles(load.samples),
        "calls_per_s": len(load.samples) / spec["duration_s"],
        "sessions": len(clients),
        "errors": load.errors,
    }


async def _connect_many(
    proto: str, port: int, count: int, *, prefix: str, concurrency: int = 64, **options: Any
) -> list[Client]:
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int) -> Client:
        async with gate:
            return await connect(proto, port, f"{prefix}-{index}", **options)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


async def idle(spec: dict[str, Any]) -> dict[str, Any]:
    """B4/B5 worker: open sessions that say hello with five tools, report, then hold them idle
    until stdin closes."""
    gate = asyncio.Semaphore(spec.get("concurrency", 100))
    clients: list[Client] = []
    errors = 0
    kinds: dict[str, int] = {}

    async def one(index: int) -> None:
        nonlocal errors
        async with gate:
            try:
                client = await connect(
                    spec["proto"],
                    spec["port"],
                    f"idle-{spec['prefix']}-{index}",
                    hello=_HELLO_FIVE_TOOLS,
                    deflate=spec["deflate"],
                    buffer=2048,
                )
                clients.append(client)
            except Exception as exc:  # any failure to connect is counted, not fatal
                errors += 1
                kind = type(exc).__name__
                if kind not in kinds:
                    traceback.print_exc(file=sys.stderr)
                kinds[kind] = kinds.get(kind, 0) + 1

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(spec["count"]))), 300)
    report = {
        "connected": len(clients),
        "errors": errors,
        "error_kinds": kinds,
        "elapsed_s": time.perf_counter() - started,
    }
    print(json.dumps(report), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    dropped = sum(1 for c in clients if c.gone.done())
    for client in clients:
        client.close()
    return {**report, "dropped_while_idle": dropped}


SCENARIOS = {
    "calls": sequential_calls,
    "tokens": token_stream,
    "ttft": first_token,
    "stop": stop_latency,
    "sessions": many_sessions,
    "idle": idle,
}


def main() -> None:
    spec = json.loads(sys.argv[1])
    raise_fd_limit()
    if spec.get("cpu") is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {spec["cpu"]})
        except OSError:
            pass
    try:
        import uvloop

        result = uvloop.run(SCENARIOS[spec["scenario"]](spec))
    except ImportError:
        result = asyncio.run(SCENARIOS[spec["scenario"]](spec))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
