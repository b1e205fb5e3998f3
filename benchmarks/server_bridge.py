"""The bridge as `agent-bridge serve` runs it, with the benchmark model, in its own process.

    python server_bridge.py [--compression on|off] [--gc tuned|default|freeze|T0,T1,T2]

Without options it uses the server's defaults, but for these: the heartbeat is pushed out of the
way, the step limit raised so one run may make thousands of sequential calls, and the flood
limits lifted, as every client comes from one address.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from bench_model import BenchModel
from common import option, serve_uvicorn

from bridge import BridgeSettings, create_app
from bridge.models.choose import choose_model
from bridge.server.tuning import tune_gc


def main() -> None:
    overrides: dict[str, object] = {
        "heartbeat_interval_s": 3600.0,
        "max_steps": 1_000_000,
        # B6/B7 are single runs of thousands of sequential calls: no loop guard in the way.
        "max_tool_calls_per_run": 10**9,
        # Rounds end by closing their sockets; their sessions need not be held for a resume.
        "resume_grace_s": 0.5,
        "max_sessions": 100_000,
        # Sessions of finished rounds are forgotten soon, so rounds do not pile up state.
        "session_ttl_s": 2.0,
        # One load generator on 127.0.0.1 stands for up to 20,000 users, each session sending
        # as fast as the bridge answers: far past what one honest client does, so the
        # per-connection and per-address limits are lifted (docs/security.md, "Defaults"). The
        # buckets are still paid from on every frame, so their cost stays in the figures.
        "frames_per_s": 1e9,
        "burst_frames": 10**9,
        "bytes_per_s": 1e12,
        "burst_bytes": 10**12,
        "max_connections_per_address": 1_000_000,
        "max_new_sessions_per_minute": 10**9,
        "new_connections_per_s": 1e9,
        "burst_connections": 10**9,
    }
    compression = option("--compression", "")
    if compression:
        overrides["compression"] = compression == "on"
    settings = BridgeSettings(**overrides)  # type: ignore[arg-type]
    gc_mode = option("--gc", "tuned" if settings.gc_tuning else "default")
    openai_url = option("--openai", "")
    if openai_url:
        # B3: a real provider over HTTP (the OpenAI-compatible test server) instead of the
        # benchmark model.
        model = choose_model(model="bench", base_url=openai_url, environ={})
        app = create_app(settings, model=model)
    else:
        app = create_app(settings, model=lambda _session_id: BenchModel())
    serve_uvicorn(
        app,
        deflate=settings.compression,
        max_size=settings.max_message_bytes + 1024,
        before_serve=_gc_setup(gc_mode),
    )


def _gc_setup(mode: str) -> Callable[[], None] | None:
    """`tuned` is what `agent-bridge serve` does; `default` leaves Python's GC alone;
    `freeze` only freezes; `T0,T1,T2` freezes and sets those thresholds (for experiments)."""
    if mode == "tuned":
        return tune_gc
    if mode == "freeze":
        return lambda: tune_gc(gc.get_threshold())
    if "," in mode:
        t0, t1, t2 = (int(x) for x in mode.split(","))
        return lambda: tune_gc((t0, t1, t2))
    return None


if __name__ == "__main__":
    main()
