"""What the benchmark servers and load generators share: tools, payloads, and how a server
process binds, announces its port and runs.

Every server binds 127.0.0.1 on a free port before it starts, prints `PORT <n>` on stdout and
then serves until it is terminated; the orchestrator reads that line instead of guessing ports.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
from collections.abc import Callable
from typing import Any

HOST = "127.0.0.1"
TOOL_NAME = "echo"

# About 200 bytes of JSON, the size of a typical small tool call's arguments.
ECHO_ARGS: dict[str, Any] = {
    "text": "The quick brown fox jumps over the lazy dog; " * 2 + "and again.",
    "count": 42,
    "tags": ["alpha", "beta", "gamma", "delta"],
    "flags": {"verbose": False, "dry_run": True},
}
ECHO_ARGS_JSON = json.dumps(ECHO_ARGS)

ECHO_TOOL: dict[str, Any] = {
    "name": TOOL_NAME,
    "description": "Return the arguments unchanged.",
    "parameters": {
        "type": "object",
        "properties": {
            "text": {"type": "string", "maxLength": 4096},
            "count": {"type": "integer", "minimum": 0},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 16},
            "flags": {
                "type": "object",
                "properties": {"verbose": {"type": "boolean"}, "dry_run": {"type": "boolean"}},
            },
        },
        "required": ["text"],
    },
}


def _tool(name: str, description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties},
        **extra,
    }


# Five tools of the kind a browser page registers: what an idle session says in its hello.
FIVE_TOOLS: list[dict[str, Any]] = [
    ECHO_TOOL,
    _tool(
        "read_page",
        "Read the visible text of the current page.",
        {"max_chars": {"type": "integer", "minimum": 1, "maximum": 100000}},
        read_only=True,
    ),
    _tool(
        "get_selection",
        "Return the text the user has selected.",
        {},
        read_only=True,
    ),
    _tool(
        "confirm",
        "Ask the user to confirm an action.",
        {"question": {"type": "string", "maxLength": 500}},
        interactive=True,
    ),
    _tool(
        "navigate",
        "Open a URL in the current tab.",
        {"url": {"type": "string", "format": "uri"}, "new_tab": {"type": "boolean"}},
        destructive=True,
    ),
]


def raise_fd_limit(wanted: int = 65_536) -> int:
    """Raise this process's file-descriptor limit as far as allowed; return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, wanted)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, OSError):
        # Not privileged: the hard limit is as far as this process may go.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, hard), hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sndbuf = env_int("BENCH_SNDBUF", 0)
    if sndbuf:
        # Accepted sockets inherit it. Loopback otherwise lets a send buffer grow to megabytes,
        # so a slow reader would only be felt after a long stream.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    sock.bind((HOST, 0))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def announce(sock: socket.socket) -> None:
    print(f"PORT {sock.getsockname()[1]}", flush=True)


def serve_uvicorn(
    app: Any,
    *,
    deflate: bool,
    max_size: int = 1_048_576 + 1024,
    before_serve: Callable[[], None] | None = None,
) -> None:
    """Run `app` under uvicorn on a fresh loopback socket, with what a deployment would use
    (uvloop and httptools when installed), access log off so logging is not measured."""
    import uvicorn

    raise_fd_limit()
    sock = bound_socket()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        ws_max_size=max_size,
        ws_per_message_deflate=deflate,
        # Pings would land in the middle of measurements; the bridge has its own heartbeat.
        ws_ping_interval=None,
        lifespan="off",
        backlog=4096,
    )
    # Loading imports the protocol classes now, so start-up work is over before `before_serve`.
    config.load()
    if before_serve is not None:
        before_serve()
    server = uvicorn.Server(config)
    announce(sock)
    server.run(sockets=[sock])


def flag(name: str) -> bool:
    return name in sys.argv[1:]


def option(name: str, default: str) -> str:
    args = sys.argv[1:]
    if name in args:
        index = args.index(name)
        if index + 1 < len(args):
            return args[index + 1]
    return default


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))
