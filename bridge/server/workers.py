"""`agent-bridge serve --workers N`: N worker processes sharing one listening socket.

Each worker is forked from this process after the socket is bound, builds its own app (its own
event loop, its own Redis connections) and serves connections as the kernel hands them out. A
worker that dies is started again; SIGINT and SIGTERM stop them all. Forking, rather than
spawning fresh interpreters, keeps the app's configuration in the process that was given it:
nothing has to be pickled or re-read.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from types import FrameType
from typing import Any

import uvicorn

from bridge.server.settings import BridgeSettings
from bridge.server.transport import uvicorn_options

__all__ = ["run_workers"]

log = logging.getLogger(__name__)


def run_workers(
    count: int, settings: BridgeSettings, log_level: str, log_config: dict[str, Any]
) -> int:
    """Serve with `count` workers until a signal stops them. `log_config` is the
    `logging_config` the command line asked for: each worker's uvicorn installs it again,
    as a single-process server does."""
    # Said to be TCP, so asyncio turns Nagle off on the connections it accepts.
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    stopping = False
    children: dict[int, int] = {}

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            os.kill(pid, signal.SIGTERM)

    for number in range(count):
        children[_start(number, sock, settings, log_level, log_config)] = number
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        number = children.pop(pid, -1)
        if number < 0:
            continue
        if not stopping:
            print(f"agent-bridge: worker {number} ended ({status}); starting it again", flush=True)
            children[_start(number, sock, settings, log_level, log_config)] = number
    sock.close()
    return 0


def _start(
    number: int,
    sock: socket.socket,
    settings: BridgeSettings,
    log_level: str,
    log_config: dict[str, Any],
) -> int:
    pid = os.fork()
    if pid:
        return pid
    # The worker: its own app and event loop on the shared socket; it never returns.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from bridge.server.cli import worker_app

    options = uvicorn_options(settings.connection_limits(), compression=settings.compression)
    # Without it uvicorn would install its own plain-text configuration over the inherited one.
    config = uvicorn.Config(worker_app(), log_level=log_level, log_config=log_config, **options)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sys.stdout.flush()
        os._exit(0)
