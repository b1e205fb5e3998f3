"""`agent-bridge`: serve the bridge, or print the protocol's JSON Schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from bridge.models.base import Model
from bridge.models.choose import choose_model, describe_model
from bridge.server.app import create_app
from bridge.server.logs import LOG_FORMATS, LOG_LEVELS, logging_config
from bridge.server.origins import is_loopback_host
from bridge.server.scaleout import check_redis
from bridge.server.settings import BridgeSettings
from bridge.server.transport import uvicorn_options
from bridge.server.tuning import tune_gc
from bridge.server.workers import run_workers
from bridge.wire import protocol_json_schema

__all__ = ["exposure_warning", "main", "raise_descriptor_limit", "worker_app"]

log = logging.getLogger("bridge.server.cli")


def raise_descriptor_limit() -> int | None:
    """Raise the soft limit on open descriptors to the hard limit; return the figure in force.

    Every connection, idle or not, holds a descriptor, and the usual soft limit (1,024) is
    reached long before memory or CPU would be. None where the platform has no such limit."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= target:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not raise the descriptor limit from %d to %d: %s", soft, target, exc)
        return soft
    return target


def exposure_warning(settings: BridgeSettings) -> str | None:
    """What to tell the operator of a server other machines can reach without a token."""
    if settings.token is not None or is_loopback_host(settings.host):
        return None
    return (
        f"binding {settings.host}, which other machines can reach, with no BRIDGE_TOKEN: "
        "anyone who reaches the port can run the agent on your model account. Set BRIDGE_TOKEN "
        "(or pass an auth hook to create_app), or bind 127.0.0.1."
    )


def _demo_dir() -> Path | None:
    """The browser demo, when running from a checkout (examples/browser)."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "browser"
        if (candidate / "index.html").is_file():
            return candidate
    return None


def _demo_mounts(demo: Path | None) -> dict[str, Path]:
    """The browser SDK the demo page imports, built into clients/js/dist of the same checkout."""
    if demo is None:
        return {}
    sdk = demo.parent.parent / "clients" / "js" / "dist"
    return {"/sdk": sdk} if (sdk / "index.js").is_file() else {}


# Worker processes read what the command line said from these (they start afresh).
_NO_DEMO = "AGENT_BRIDGE_NO_DEMO"


def _app(settings: BridgeSettings, model: Model, no_demo: bool) -> FastAPI:
    demo = None if no_demo else _demo_dir()
    return create_app(settings, model=model, static_dir=demo, static_mounts=_demo_mounts(demo))


def worker_app() -> FastAPI:
    """The app of one worker process of `agent-bridge serve --workers N`."""
    settings = BridgeSettings()
    model = choose_model(model=settings.model, base_url=None, api=settings.model_api)
    if settings.gc_tuning:
        tune_gc()
    return _app(settings, model, no_demo=os.environ.get(_NO_DEMO) == "1")


def _serve(args: argparse.Namespace) -> int:
    # Before anything logs: the bridge's own loggers get a handler (they had none under serve),
    # at the operator's level and format, with redaction on the handler itself.
    log_config = logging_config(args.log_level, args.log_format)
    logging.config.dictConfig(log_config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = BridgeSettings(**overrides)
    if args.workers > 1 and settings.redis_url is None:
        print(
            "agent-bridge: --workers needs BRIDGE_REDIS_URL: without a shared store each worker "
            "keeps its own sessions, and a client whose connection lands on another worker "
            "would find its session gone (docs/scale-out.md)",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(check_redis(settings))
    except ConnectionError as exc:
        print(f"agent-bridge: {exc}", file=sys.stderr)
        return 1
    model = choose_model(
        model=args.model or settings.model,
        base_url=args.base_url,
        api=args.api or settings.model_api,
    )
    app = _app(settings, model, args.no_demo)
    demo = None if args.no_demo else _demo_dir()
    base = f"http://{settings.host}:{settings.port}"
    print(f"agent-bridge serving {base}", flush=True)
    # Without an id the server makes an unguessable one (ready.session_id): the recommended way.
    print(f"  WebSocket: ws://{settings.host}:{settings.port}/ws/agent", flush=True)
    print(f"  model: {describe_model(model)}", flush=True)
    if demo is not None:
        print(f"  demo page: {base}/", flush=True)
    warning = exposure_warning(settings)
    if warning is not None:
        print(f"WARNING: {warning}", file=sys.stderr, flush=True)
    descriptors = raise_descriptor_limit()
    if descriptors is not None:
        # Each connection holds one descriptor: this figure caps the connections served at once.
        print(f"  open descriptors: up to {descriptors}", flush=True)
    options = uvicorn_options(settings.connection_limits(), compression=settings.compression)
    if args.workers > 1:
        print(f"  workers: {args.workers}, cluster {settings.cluster!r}", flush=True)
        _pass_to_workers(args, settings)
        return run_workers(args.workers, settings, args.log_level, log_config)
    if settings.gc_tuning:
        # After start-up, so the modules and schemas just built are frozen out of every
        # later collection (docs/benchmarks.md: B6/B7).
        tune_gc()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        log_config=log_config,
        **options,
    )
    return 0


def _pass_to_workers(args: argparse.Namespace, settings: BridgeSettings) -> None:
    """Worker processes build their settings from the environment: put the flags there."""
    for name, value in (
        ("BRIDGE_HOST", settings.host),
        ("BRIDGE_PORT", str(settings.port)),
        ("BRIDGE_MODEL", args.model),
        ("BRIDGE_MODEL_API", args.api),
        ("OPENAI_BASE_URL", args.base_url),
        (_NO_DEMO, "1" if args.no_demo else None),
    ):
        if value is not None:
            os.environ[name] = value


def _schema(_args: argparse.Namespace) -> int:
    json.dump(protocol_json_schema(), sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agent-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1, BRIDGE_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, BRIDGE_PORT)")
    serve.add_argument("--no-demo", action="store_true", help="do not serve the demo page at /")
    serve.add_argument(
        "--log-level",
        default="info",
        choices=list(LOG_LEVELS),
        help="for uvicorn and the bridge; info has one line per run and per tool call",
    )
    serve.add_argument(
        "--log-format",
        default="text",
        choices=list(LOG_FORMATS),
        help="text, or json: one JSON object per line on stderr (credentials redacted in both)",
    )
    serve.add_argument(
        "--model", help="model name, or 'offline' (BRIDGE_MODEL; default gpt-4o-mini with a key)"
    )
    serve.add_argument(
        "--base-url",
        help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (OPENAI_BASE_URL)",
    )
    serve.add_argument(
        "--api",
        choices=["chat", "responses"],
        help="Chat Completions or the Responses API (BRIDGE_MODEL_API; default chat)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes; more than 1 needs BRIDGE_REDIS_URL (docs/scale-out.md)",
    )
    serve.set_defaults(func=_serve)
    schema = commands.add_parser("schema", help="print the protocol's JSON Schema")
    schema.set_defaults(func=_schema)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
