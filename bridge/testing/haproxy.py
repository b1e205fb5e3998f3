"""A real HAProxy in front of several workers: round-robin, no stickiness, WebSocket-friendly.

    with HAProxy([worker_a.port, worker_b.port]) as lb:   # or `async with`
        ws = await websockets.connect(lb.ws_url("session-1"))

`haproxy_config()` writes the configuration (docs/scale-out.md shows the same one): every
request, and every WebSocket handshake, goes to the next worker in turn; nothing pins a client
to a worker, so a reconnect lands elsewhere, which is what a scale-out has to survive. The
timeouts are the ones that matter for long-lived WebSockets (see `Timeouts`).

The helper runs Debian's `haproxy` in the foreground in master-worker mode on a free loopback
port and returns once the master reported "Loading success." (its worker is up and bound) and
a TCP connection is accepted; stopping sends SIGTERM to the process group.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from bridge.testing.redis_server import (
    Balancer,
    LoggedProcess,
    address,
    find_executable,
    free_port,
)

__all__ = ["HAProxy", "Timeouts", "haproxy_config"]

_READY = "Loading success."


@dataclass(frozen=True, slots=True)
class Timeouts:
    """HAProxy's timeouts, in milliseconds.

    `client`/`server` bound inactivity of an HTTP exchange; once a connection is upgraded to a
    WebSocket, `tunnel` replaces both, so an idle WebSocket lives for `tunnel` and not for the
    short HTTP timeout (the bridge's own heartbeat keeps a live one busy well within it).
    `client_fin`/`server_fin` bound a half-closed WebSocket, so one side's departure does not
    leave the other's socket held for the whole tunnel timeout.
    """

    connect: int = 2_000
    client: int = 30_000
    server: int = 30_000
    tunnel: int = 3_600_000
    client_fin: int = 5_000
    server_fin: int = 5_000
    http_request: int = 10_000
    http_keep_alive: int = 10_000
    queue: int = 5_000


def haproxy_config(
    backends: Sequence[tuple[str, int]],
    *,
    bind_host: str = "127.0.0.1",
    bind_port: int,
    timeouts: Timeouts = Timeouts(),  # frozen, so one shared default is safe
    check_path: str | None = None,
    check_interval_ms: int = 1_000,
    access_log: bool = False,
) -> str:
    """The configuration: one frontend, one round-robin backend of `backends` (host, port)."""
    if not backends:
        raise ValueError("haproxy needs at least one backend")
    bind = address(bind_host, bind_port)
    lines = [
        "global",
        "    maxconn 4096",
        # Logs go to our stdout, where the helper keeps the last lines for failure messages.
        *(["    log stdout format raw local0"] if access_log else []),
        "",
        "defaults",
        "    mode http",
        *(["    log global", "    option httplog"] if access_log else []),
        # Keep-alive on both sides is HAProxy's default mode and is kept: there is no
        # `option http-server-close` or `option httpclose`. Each request is balanced on its own
        # (no `option prefer-last-server`), and a WebSocket upgrade becomes a tunnel.
        f"    timeout connect {timeouts.connect}ms",
        f"    timeout client {timeouts.client}ms",
        f"    timeout server {timeouts.server}ms",
        f"    timeout tunnel {timeouts.tunnel}ms",
        f"    timeout client-fin {timeouts.client_fin}ms",
        f"    timeout server-fin {timeouts.server_fin}ms",
        f"    timeout http-request {timeouts.http_request}ms",
        f"    timeout http-keep-alive {timeouts.http_keep_alive}ms",
        f"    timeout queue {timeouts.queue}ms",
        # A worker that refuses the connection (killed, restarting) costs the client nothing:
        # the attempt is retried once on the next worker.
        "    retries 1",
        "    option redispatch",
        # The client's address, for the bridge's per-address limits behind the balancer.
        "    option forwardfor",
        "",
        "frontend bridge",
        f"    bind {bind}",
        "    default_backend workers",
        "",
        "backend workers",
        # Round-robin and nothing else: no `cookie`, no `stick-table`, no `balance source`.
        "    balance roundrobin",
    ]
    if check_path is not None:
        lines += [
            f"    option httpchk GET {check_path}",
            "    http-check expect status 200",
            f"    default-server inter {check_interval_ms}ms fall 2 rise 1",
        ]
    check = " check" if check_path is not None else ""
    for n, (host, port) in enumerate(backends):
        lines.append(f"    server worker{n} {address(host, port)}{check}")
    return "\n".join(lines) + "\n"


class HAProxy(Balancer):
    def __init__(
        self,
        backends: Sequence[int | tuple[str, int]],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        timeouts: Timeouts | None = None,
        check_path: str | None = None,
        access_log: bool = False,
        executable: str | None = None,
        ready_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.backends = [("127.0.0.1", b) if isinstance(b, int) else b for b in backends]
        self.config = haproxy_config(
            self.backends,
            bind_host=host,
            bind_port=self.port,
            timeouts=timeouts or Timeouts(),
            check_path=check_path,
            access_log=access_log,
        )
        self._executable = executable
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._dir = None
        self._process = None

    def start(self) -> None:
        if self.running:
            return
        executable = self._executable or find_executable("haproxy", "haproxy")
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="bridge-haproxy-")
        path = os.path.join(self._dir.name, "haproxy.cfg")
        with open(path, "w", encoding="utf-8") as file:
            file.write(self.config)
        # -W: master-worker, whose master says "Loading success." once the worker runs;
        # -db: stay in the foreground, logging to our pipe.
        args = [executable, "-W", "-db", "-f", path]
        self._process = LoggedProcess(f"haproxy on port {self.port}", args, _READY)
        self._process.start(self._ready_timeout_s)
        try:
            with socket.create_connection((self.host, self.port), timeout=self._ready_timeout_s):
                pass
        except OSError as exc:
            self.stop()
            raise RuntimeError(f"haproxy on port {self.port} does not accept: {exc}") from None
