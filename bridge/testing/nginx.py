"""A real nginx in front of several workers: round-robin, no stickiness, WebSocket-friendly.

    with Nginx([worker_a.port, worker_b.port]) as lb:     # or `async with`
        ws = await websockets.connect(lb.ws_url("session-1"))

`nginx_config()` writes the configuration (docs/scale-out.md shows the same one), the part
that goes in nginx's `http` block: every request, and every WebSocket handshake, goes to the
next worker in turn; nothing pins a client to a worker, so a reconnect lands elsewhere. The
timeouts are the ones that matter for long-lived WebSockets (see `Timeouts`).

The helper runs Debian's `nginx` in the foreground, with that configuration included by a main
file of its own that keeps the pid file and the temporary files in a temporary directory and
the log on stderr, which the helper reads. It returns once the master logged that it started
its worker process and one request through nginx (`probe_path`, `/healthz` by default) was
answered 200 by a worker, each within `ready_timeout_s`; stopping sends SIGTERM to the process
group (SIGKILL after `stop_timeout_s`).
"""

from __future__ import annotations

import http.client
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

__all__ = ["Nginx", "Timeouts", "nginx_config"]

# The master logs this, with the pid, right after forking a worker process; the listening
# socket is open by then, so connections wait in its backlog until the worker accepts them.
_READY = "start worker process "
_TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """nginx's timeouts, in milliseconds.

    Once a connection is upgraded to a WebSocket, nginx closes it when nothing has passed in
    either direction for `websocket_read` (traffic either way starts that wait anew), so it has
    to outlast the bridge's heartbeat: a ping every 20 s, answered within 20 s. It also bounds
    the wait for a worker's answer to the handshake. `websocket_send` only bounds a write to a
    worker that stopped reading. `http_read`/`http_send` do the same for plain requests,
    `connect` bounds reaching a worker, and `worker_down` is how long a worker that refused a
    connection is left out of the rotation. `upstream_keepalive` closes an idle connection to a
    worker before uvicorn's own 5 s keep-alive does, so nginx never reuses one being closed.
    """

    connect: int = 2_000
    websocket_read: int = 3_600_000
    websocket_send: int = 3_600_000
    http_read: int = 30_000
    http_send: int = 30_000
    worker_down: int = 2_000
    upstream_keepalive: int = 4_000


def _duration(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def nginx_config(
    backends: Sequence[tuple[str, int]],
    *,
    bind_host: str = "127.0.0.1",
    bind_port: int,
    timeouts: Timeouts = Timeouts(),  # frozen, so one shared default is safe
) -> str:
    """The `http`-block configuration: one server, one round-robin upstream of `backends`."""
    if not backends:
        raise ValueError("nginx needs at least one backend")
    t = timeouts
    fails = f"max_fails=1 fail_timeout={_duration(t.worker_down)}"
    lines = [
        "upstream bridge_workers {",
        "    # Round robin, nginx's default, and nothing that pins a client (no ip_hash, hash or",
        "    # sticky): a reconnect lands on the next worker. The zone shares the turn and the",
        "    # failures between nginx's own worker processes.",
        "    zone bridge_workers 64k;",
        *(f"    server {address(host, port)} {fails};" for host, port in backends),
        "    # Idle connections to the workers, reused by plain requests (never by a WebSocket)",
        "    # and closed before uvicorn's 5 s keep-alive closes them.",
        "    keepalive 32;",
        f"    keepalive_timeout {_duration(t.upstream_keepalive)};",
        "}",
        "",
        "# Upgrade and Connection are hop-by-hop: nginx passes them to a worker only when told,",
        "# and a WebSocket handshake needs both.",
        "map $http_upgrade $connection_upgrade {",
        "    default upgrade;",
        "    ''      close;",
        "}",
        "",
        "server {",
        f"    listen {address(bind_host, bind_port)};",
        "",
        "    location /ws/ {",
        "        proxy_pass http://bridge_workers;",
        "        proxy_http_version 1.1;",
        "        proxy_set_header Upgrade $http_upgrade;",
        "        proxy_set_header Connection $connection_upgrade;",
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"        proxy_connect_timeout {_duration(t.connect)};",
        "        # Once upgraded, a WebSocket is closed after proxy_read_timeout with nothing",
        "        # passing either way: far longer than the bridge's heartbeat (every 20 s).",
        f"        proxy_read_timeout {_duration(t.websocket_read)};",
        f"        proxy_send_timeout {_duration(t.websocket_send)};",
        "        proxy_buffering off;",
        "        # A worker that refuses the connection (killed, restarting) costs the client",
        "        # nothing: the handshake is made again on the next worker.",
        "        proxy_next_upstream error timeout;",
        "        proxy_next_upstream_tries 2;",
        "    }",
        "",
        "    location / {",
        "        proxy_pass http://bridge_workers;",
        "        # HTTP/1.1 with no Connection header: the connection to the worker stays open.",
        "        proxy_http_version 1.1;",
        '        proxy_set_header Connection "";',
        "        proxy_set_header Host $host;",
        "        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"        proxy_connect_timeout {_duration(t.connect)};",
        f"        proxy_read_timeout {_duration(t.http_read)};",
        f"        proxy_send_timeout {_duration(t.http_send)};",
        "        proxy_next_upstream error timeout;",
        "        proxy_next_upstream_tries 2;",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _main_config(directory: str, site: str) -> str:
    """The main file around the site configuration: the process, its logs and its files."""
    temp_paths = [f'    {kind}_temp_path "{directory}/{kind}";' for kind in _TEMP_KINDS]
    lines = [
        # In the foreground, a child of the helper, which watches its log on stderr.
        "daemon off;",
        "master_process on;",
        # A test needs no more than one worker process.
        "worker_processes 1;",
        f'pid "{directory}/nginx.pid";',
        # Notice level is where the master says it started its worker: the readiness signal.
        "error_log stderr notice;",
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        "    access_log off;",
        # The built-in temporary paths are the system nginx's, which a test must not touch.
        *temp_paths,
        f'    include "{site}";',
        "}",
    ]
    return "\n".join(lines) + "\n"


class Nginx(Balancer):
    def __init__(
        self,
        backends: Sequence[int | tuple[str, int]],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        timeouts: Timeouts | None = None,
        probe_path: str | None = "/healthz",
        executable: str | None = None,
        ready_timeout_s: float = 10.0,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.backends = [("127.0.0.1", b) if isinstance(b, int) else b for b in backends]
        self.config = nginx_config(
            self.backends, bind_host=host, bind_port=self.port, timeouts=timeouts or Timeouts()
        )
        self._probe_path = probe_path
        self._executable = executable
        self._ready_timeout_s = ready_timeout_s
        self._stop_timeout_s = stop_timeout_s
        self._dir = None
        self._process = None

    def start(self) -> None:
        if self.running:
            return
        executable = self._executable or find_executable("nginx", "nginx-light")
        if self._dir is None:
            self._dir = tempfile.TemporaryDirectory(prefix="bridge-nginx-")
            # Started by root, nginx's worker process runs as another user, which must get
            # through to the temporary directories nginx makes (and chowns) in here.
            os.chmod(self._dir.name, 0o711)
        directory = self._dir.name
        site = os.path.join(directory, "bridge.conf")
        main = os.path.join(directory, "nginx.conf")
        with open(site, "w", encoding="utf-8") as file:
            file.write(self.config)
        with open(main, "w", encoding="utf-8") as file:
            file.write(_main_config(directory, site))
        # -p: nginx's prefix, where it looks for anything named without a path, is ours.
        args = [executable, "-p", directory + os.sep, "-c", main]
        name = f"nginx on port {self.port}"
        self._process = LoggedProcess(name, args, _READY)
        self._process.start(self._ready_timeout_s)
        try:
            self._check_ready()
        except (OSError, http.client.HTTPException, RuntimeError) as exc:
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"{name} is not ready: {exc}\n{tail}") from None

    def _check_ready(self) -> None:
        """A connection is accepted, and the probe, if any, answered 200 through nginx."""
        if self._probe_path is None:
            with socket.create_connection((self.host, self.port), self._ready_timeout_s):
                return
        status = self._get(self._probe_path)
        if status != 200:
            raise RuntimeError(f"GET {self._probe_path} through nginx answered {status}")

    def _get(self, path: str) -> int:
        """The status of one GET through nginx on a fresh connection; every step is bounded."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=self._ready_timeout_s)
        try:
            connection.request("GET", path, headers={"Connection": "close"})
            return connection.getresponse().status
        finally:
            connection.close()
