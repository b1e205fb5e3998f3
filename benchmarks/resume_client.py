"""B9's client: how long a returning client waits for what it missed.

    python resume_client.py PORT ITERATIONS TOKENS MISSED

Each iteration opens a session, streams a run of TOKENS tokens to its end, drops the socket
without a close, and comes back three ways, timing each from the start of the new connection:
a plain hello on a fresh session (the baseline a resume is compared with), a resume that misses
the last MISSED frames (replayed from the window: time to the first and to the last of them),
and a resume after a page reload (last_seq 0: ready, then the snapshot). Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

import websockets


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _hello(url: str, resume: dict[str, Any] | None = None) -> Any:
    ws = await websockets.connect(url, max_size=None, compression=None)
    hello: dict[str, Any] = {"type": "hello", "protocol": 1}
    if resume is not None:
        hello["resume"] = resume
    await ws.send(json.dumps(hello))
    return ws


async def _one(base: str, n: int, tokens: int, missed: int) -> dict[str, float]:
    url = f"{base}/ws/agent/resume-{n}"
    began = time.perf_counter()
    ws = await _hello(url)
    ready = json.loads(await ws.recv())
    fresh_ms = (time.perf_counter() - began) * 1000
    await ws.send(json.dumps({"type": "message", "content": f"tokens {tokens}"}))
    last = 0
    while True:
        frame = json.loads(await ws.recv())
        last = frame.get("seq", last)
        if frame["type"] == "complete":
            break
    ws.transport.abort()  # a dropped link: no close frame
    token = ready["resume_token"]

    began = time.perf_counter()
    ws = await _hello(url, {"token": token, "last_seq": last - missed})
    json.loads(await ws.recv())  # ready
    await ws.recv()
    first_ms = (time.perf_counter() - began) * 1000
    for _ in range(missed - 1):
        await ws.recv()
    all_ms = (time.perf_counter() - began) * 1000
    ws.transport.abort()

    began = time.perf_counter()
    ws = await _hello(url, {"token": token, "last_seq": 0})
    await ws.recv()  # ready
    snapshot = json.loads(await ws.recv())
    snapshot_ms = (time.perf_counter() - began) * 1000
    assert snapshot["type"] == "snapshot", snapshot
    await ws.send(json.dumps({"type": "bye"}))
    await ws.close()
    return {"fresh": fresh_ms, "first": first_ms, "all": all_ms, "snapshot": snapshot_ms}


async def main(port: int, iterations: int, tokens: int, missed: int) -> dict[str, Any]:
    base = f"ws://127.0.0.1:{port}"
    samples = [await _one(base, n, tokens, missed) for n in range(iterations)]
    out: dict[str, Any] = {"iterations": iterations, "tokens": tokens, "missed": missed}
    for key in ("fresh", "first", "all", "snapshot"):
        values = [s[key] for s in samples]
        out[f"{key}_p50_ms"] = statistics.median(values)
        out[f"{key}_p99_ms"] = _pct(values, 0.99)
    return out


if __name__ == "__main__":
    port, iterations, tokens, missed = (int(a) for a in sys.argv[1:5])
    print(json.dumps(asyncio.run(main(port, iterations, tokens, missed))), flush=True)
