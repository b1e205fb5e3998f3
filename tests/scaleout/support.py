"""Real processes for the scale-out tests: `agent-bridge serve` workers on one Redis, a model
that answers from what it is asked, and small probes.

Workers are started as the user would start them (the installed `agent-bridge` script, its
settings in `BRIDGE_*` variables) and are ready once uvicorn said its start-up is complete and
`/healthz` answered 200. Every wait is bounded; none sleeps for a guessed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.testing import OpenAIServer, Reply
from bridge.testing.haproxy import HAProxy
from bridge.testing.openai_wire import ScriptItem
from bridge.testing.redis_server import RedisServer, free_port
from bridge_client import BridgeClient
from tests.store.support import require

READY_S = 20.0
_STARTED = "Application startup complete."


def agent_bridge() -> list[str]:
    """The installed console script next to this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("agent-bridge")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "bridge.server.cli"]


def worker_env(redis_url: str | None, cluster: str, **settings: str) -> dict[str, str]:
    """The environment of a worker: the cluster, a short lease, a generous grace, and limits
    that a test's reconnects from one address never reach."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "OPENAI_"))}
    env.update(
        OPENAI_API_KEY="test",
        BRIDGE_CLUSTER=cluster,
        BRIDGE_OWNER_LEASE_S="1",
        BRIDGE_RESUME_GRACE_S="120",
        BRIDGE_MAX_STEPS="40",
        BRIDGE_MAX_NEW_SESSIONS_PER_MINUTE="10000",
        BRIDGE_NEW_CONNECTIONS_PER_S="1000",
        BRIDGE_GC_TUNING="false",
        PYTHONUNBUFFERED="1",
    )
    if redis_url is not None:
        env["BRIDGE_REDIS_URL"] = redis_url
    env.update(settings)
    return env


@dataclass(frozen=True, slots=True)
class Line:
    at: float
    text: str


class Process:
    """A child process whose every output line is kept with the time it was read (the reader
    thread also keeps the pipe drained, so a chatty process never blocks on it)."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str]) -> None:
        self.name = name
        self.lines: list[Line] = []
        self._seen = threading.Condition()
        self.proc = subprocess.Popen(
            list(args),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own group: a SIGKILL of the group takes forked workers with it.
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True, name=name).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._seen:
                self.lines.append(Line(time.monotonic(), raw.rstrip()))
                self._seen.notify_all()
        with self._seen:
            self.lines.append(Line(time.monotonic(), "<eof>"))
            self._seen.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def wait_line(self, text: str, timeout_s: float, count: int = 1) -> bool:
        """Block (in a thread) until `text` was printed `count` times or the process ended."""
        deadline = time.monotonic() + timeout_s
        with self._seen:
            while True:
                found = sum(text in line.text for line in self.lines)
                if found >= count:
                    return True
                if self.lines and self.lines[-1].text == "<eof>":
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._seen.wait(left)

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL, as a crash or a lost host: nothing is handed over."""
        self.signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 5.0) -> int:
        if self.alive:
            self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


class Worker(Process):
    def __init__(self, number: int, env: dict[str, str], model_url: str | None) -> None:
        self.number = number
        self.port = free_port()
        args = [*agent_bridge(), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--no-demo", "--log-level", "info"]
        args += ["--base-url", model_url, "--model", "m"] if model_url else ["--model", "offline"]
        super().__init__(f"worker{number}", args, env)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, session_id: str = "") -> str:
        tail = f"/{session_id}" if session_id else ""
        return f"ws://127.0.0.1:{self.port}/ws/agent{tail}"


async def healthz(url: str, timeout_s: float = 2.0) -> tuple[int, dict[str, Any]]:
    """GET /healthz on a fresh connection: the status and the JSON body."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            raw = await reader.read()
        finally:
            writer.close()
    head, _, body = raw.decode("latin-1").partition("\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def until(
    check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy, within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(every_s)


async def healthy(worker: Worker, timeout_s: float = READY_S) -> None:
    async def ok() -> bool:
        with contextlib.suppress(OSError, TimeoutError, ValueError, IndexError):
            status, _ = await healthz(worker.http_url, timeout_s=1.0)
            return status == 200
        return False

    await until(ok, timeout_s, f"{worker.name} answers /healthz\n{worker.output()[-3000:]}")


async def start_workers(count: int, env: dict[str, str], model_url: str | None) -> list[Worker]:
    """Start `count` workers at once (their imports overlap) and wait for each to be ready."""
    workers = [Worker(n, env, model_url) for n in range(count)]
    try:
        for worker in workers:
            started = await asyncio.to_thread(worker.wait_line, _STARTED, READY_S)
            assert started, f"{worker.name} did not start:\n{worker.output()[-3000:]}"
            await healthy(worker)
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


@dataclass
class Cluster:
    redis: RedisServer
    workers: list[Worker]
    balancer: HAProxy
    model: OpenAIServer
    cluster: str
    extra: dict[str, Any] = field(default_factory=dict)

    def ws_url(self, session_id: str = "") -> str:
        tail = f"/{session_id}" if session_id else ""
        return f"{self.balancer.http_url.replace('http://', 'ws://', 1)}/ws/agent{tail}"

    def worker_of(self, pid: int) -> Worker:
        return next(w for w in self.workers if w.pid == pid)

    def logs(self) -> str:
        parts = [f"--- {w.name} (pid {w.pid}) ---\n{w.output()[-4000:]}" for w in self.workers]
        return "\n".join(parts)


@contextlib.asynccontextmanager
async def running_cluster(
    redis: RedisServer, model: OpenAIServer, count: int, cluster: str, **settings: str
) -> AsyncIterator[Cluster]:
    """`count` workers on `redis`, each asking `model`, behind a round-robin HAProxy whose
    health checks probe `/healthz` (as in docs/scale-out.md)."""
    env = worker_env(redis.url, cluster, **settings)
    workers = await start_workers(count, env, model.base_url)
    balancer = HAProxy([w.port for w in workers], check_path="/healthz")
    try:
        await asyncio.to_thread(require, balancer.start)
        yield Cluster(redis, workers, balancer, model, cluster)
    finally:
        await asyncio.to_thread(balancer.close)
        for worker in workers:
            await asyncio.to_thread(worker.stop)


def owner_pid(owner: str | None) -> int | None:
    """The process id in a worker's id (`host-pid-random`), so a test can find the owner."""
    if owner is None:
        return None
    return int(owner.rsplit("-", 2)[1])


# The model ------------------------------------------------------------------------------------


class Decider(list[ScriptItem]):
    """An `OpenAIServer` script that decides each reply from the request it answers.

    The server appends each request to `requests` and then takes the next script item, with
    no await in between; so the item can be made from the request just recorded. Sessions on
    several workers ask in any order, and a step made again after a move asks the same thing
    twice: a fixed script could not answer either right, a function of the request can.
    """

    def __init__(self, server: OpenAIServer, decide: Callable[[dict[str, Any]], Reply]) -> None:
        super().__init__()
        self._server = server
        self._decide = decide

    def __bool__(self) -> bool:
        return True

    def pop(self, index: Any = -1) -> ScriptItem:
        body = self._server.requests[-1].body
        return self._decide(body if isinstance(body, dict) else {})


def since_last_user(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The last user message's text and the messages after it (this run's steps)."""
    for index in range(len(messages) - 1, -1, -1):
        if messages[index].get("role") == "user":
            return str(messages[index].get("content")), messages[index + 1 :]
    return "", messages


def tool_results(request: dict[str, Any]) -> tuple[list[str], dict[str, list[str]]]:
    """The tool call ids the request's assistant turns made, and each id's tool results."""
    calls: list[str] = []
    results: dict[str, list[str]] = {}
    for message in request.get("messages", []):
        for call in message.get("tool_calls") or []:
            calls.append(call["id"])
        if message.get("role") == "tool":
            results.setdefault(message["tool_call_id"], []).append(str(message.get("content")))
    return calls, results


class WatchingClient(BridgeClient):
    """The Python client, telling the test of every server message as it arrives (`run()`
    consumes the events; a test also needs to act in the middle of one)."""

    def __init__(self, url: str, watch: Callable[[dict[str, Any]], Any], **options: Any) -> None:
        super().__init__(url, **options)
        self._watch = watch

    async def _dispatch(self, link: Any, event: dict[str, Any]) -> None:
        await super()._dispatch(link, event)
        outcome = self._watch(event)
        if asyncio.iscoroutine(outcome):
            await outcome


def frames(events: list[dict[str, Any]], *kinds: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("type") in kinds]


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
