"""A real `redis-server` on a free loopback port, for tests of anything that uses Redis.

    with RedisServer() as redis:          # or `async with`
        store = await RedisStore.connect(redis.url, cluster="test")
        redis.stop(); redis.start()        # an outage, and Redis back on the same port

It runs in a temporary directory with persistence off (no RDB, no AOF), so nothing outlives
it and a restart starts empty, as a crashed cache would. Start returns once the server logged
that it accepts connections and answered a PING, within `ready_timeout_s`; stop ends it with
SIGTERM (SIGKILL after `stop_timeout_s`). A missing executable raises `MissingExecutable`
with what to install. Waiting uses the process's own log line, not a polling loop.

This module talks RESP over a plain socket, so it needs no Redis client library.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from types import TracebackType
from typing import Self

__all__ = [
    "Balancer",
    "LoggedProcess",
    "MissingExecutable",
    "RedisServer",
    "Service",
    "address",
    "find_executable",
    "free_port",
]

_READY = "Ready to accept connections"
_LOG_LINES = 200


class MissingExecutable(FileNotFoundError):
    """A program a test needs is not installed; the message says how to get it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (another process may still take it before us)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_executable(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise MissingExecutable(
            f"{name} is not installed: run 'make services' as root, or "
            f"'sudo apt-get install {package}' (Debian)"
        )
    return path


class Service:
    """A real service a test starts: `with` and `async with` start it and close it.

    Starting blocks until the service is ready, so the async forms keep it off the event loop.
    A subclass's `start` runs its program as `_process` in the temporary directory `_dir`;
    stopping, closing and reading its log are the same for every service.
    """

    host: str
    port: int
    _process: LoggedProcess | None = None
    _dir: tempfile.TemporaryDirectory[str] | None = None
    _stop_timeout_s: float = 5.0

    def start(self) -> None:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.running

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def log_tail(self, lines: int = 20) -> str:
        return "" if self._process is None else self._process.log_tail(lines)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop(self._stop_timeout_s)

    def close(self) -> None:
        self.stop()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)


class Balancer(Service):
    """A load balancer in front of the bridge's workers: its URLs are the workers' URLs."""

    @property
    def http_url(self) -> str:
        return f"http://{address(self.host, self.port)}"

    def ws_url(self, session_id: str) -> str:
        return f"ws://{address(self.host, self.port)}/ws/agent/{session_id}"


def address(host: str, port: int) -> str:
    """`host:port`, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LoggedProcess:
    """A child process whose output is kept (last lines) and watched for a line saying it is
    ready. Shared by the real-service helpers; it runs in its own process group, so stopping
    it also stops any worker it forked."""

    def __init__(self, name: str, args: list[str], ready_line: str) -> None:
        self.name = name
        self._args = args
        self._ready_line = ready_line
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._log: collections.deque[str] = collections.deque(maxlen=_LOG_LINES)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(list(self._log)[-lines:])

    def start(self, ready_timeout_s: float) -> None:
        """Return once the ready line was printed; raise with the log if it never is."""
        ready = threading.Event()
        self._log.clear()
        self._process = subprocess.Popen(
            self._args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group: a terminal's Ctrl-C reaches the test, which stops it, and
            # a stop reaches every process it forked.
            start_new_session=True,
        )
        # The reader drains the pipe for the whole life of the process (a full pipe would
        # block it) and marks the moment it says it is ready.
        self._reader = threading.Thread(
            target=self._read, args=(self._process, ready), daemon=True, name=self.name
        )
        self._reader.start()
        if not ready.wait(ready_timeout_s) or not self.running:
            why = "exited" if not self.running else f"was not ready within {ready_timeout_s} s"
            self.stop(1.0)
            raise RuntimeError(f"{self.name} {why}:\n{self.log_tail()}")

    def _read(self, process: subprocess.Popen[str], ready: threading.Event) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._log.append(line.rstrip())
            if self._ready_line in line:
                ready.set()
        # EOF: the process is gone; whoever waits for readiness must not wait any longer.
        ready.set()

    def signal(self, signum: int) -> None:
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._process.pid, signum)

    def stop(self, timeout_s: float) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; wait for the exit either way."""
        process = self._process
        if process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            process.wait(timeout_s)
        # A forked worker may outlive its parent by a moment; the group must not.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        # The reader ends at the pipe's EOF, which the whole group's exit brings: closing the
        # pipe under it instead would make its next read fail.
        reader = self._reader
        if reader is not None:
            reader.join(timeout_s)
        if process.stdout is not None and (reader is None or not reader.is_alive()):
            process.stdout.close()
        self._process = None


class RedisServer(Service):
    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        executable: str | None = None,
        ready_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        # Chosen once: a restart comes back where clients expect it.
        self.port = port if port is not None else free_port(host)
        self._executable = executable
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._extra_args = extra_args
        self._dir = None
        self._process = None

    @property
    def url(self) -> str:
        return f"redis://{address(self.host, self.port)}/0"

    # Life --------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.running:
            return
        executable = self._executable or find_executable("redis-server", "redis-server")
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="bridge-redis-")
        args = [
            executable,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", self._dir.name,
            # Persistence off: a test's data never reaches the disk and a restart starts empty.
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--logfile", "",
            "--loglevel", "notice",
            "--pidfile", os.path.join(self._dir.name, "redis.pid"),
            *self._extra_args,
        ]  # fmt: skip
        self._process = LoggedProcess(f"redis-server on port {self.port}", args, _READY)
        self._process.start(self._ready_timeout_s)
        if not self.ping():
            self.stop()
            raise RuntimeError(f"redis-server on port {self.port} does not answer PING")

    def kill(self) -> None:
        """SIGKILL: Redis gone at once, as when its host dies."""
        if self._process is not None:
            self._process.signal(signal.SIGKILL)
        self.stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    def ping(self, timeout_s: float = 2.0) -> bool:
        """Whether a PING over a fresh connection, in plain RESP, gets an answer: PONG, or the
        refusal of a server that wants a password (it is up all the same)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s) as sock:
                sock.sendall(b"PING\r\n")
                deadline = time.monotonic() + timeout_s
                reply = b""
                while not reply.endswith(b"\r\n") and time.monotonic() < deadline:
                    chunk = sock.recv(64)
                    if not chunk:
                        break
                    reply += chunk
                return reply.startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False
