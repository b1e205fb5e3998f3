"""B10 client: the cost of a session moving to the worker a client's connection lands on.

    python cluster_client.py PORT_A PORT_B SAMPLES [PER_SESSION]

A session on worker A runs `calls N` (the benchmark model: N sequential calls of the echo
tool); it grows by 8 calls per sample. With PER_SESSION, a fresh session is started every
PER_SESSION samples, so many samples measure sessions of one size (5: up to 50 calls; 25: up
to 210). Measured, each SAMPLES times, from the moment the client acts to the next
tool_request:

- `steady`: a tool_response on a live connection, on the worker that owns the session;
- `reconnect, owner`: the connection closed and a new one made to the owner, with a resume and
  the answer sent right after hello;
- `reconnect, non-owner`: the same to the other worker, which claims the session, has the
  owner hand it over (run stopped, record stored, lease released) and takes the run on;
- `steady, after the move`: a tool_response on the new connection, on the new owner.

Prints one JSON line of percentiles (ms).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import websockets
from common import ECHO_TOOL, HOST


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "n": float(len(ordered))}


class Session:
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.token = ""
        self.last_seq = 0
        self.ws: Any = None

    async def open(self, port: int, resume: bool) -> dict[str, Any]:
        url = f"ws://{HOST}:{port}/ws/agent/{self.session_id}"
        self.ws = await websockets.connect(url, compression=None, max_size=None)
        hello: dict[str, Any] = {"type": "hello", "protocol": 1, "tools": [ECHO_TOOL]}
        if resume:
            hello["resume"] = {"token": self.token, "last_seq": self.last_seq}
        await self.ws.send(json.dumps(hello))
        ready = await self.recv()
        assert ready["type"] == "ready", ready
        self.token = ready["resume_token"]
        return ready

    async def recv(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await self.ws.recv())
        seq = frame.get("seq")
        if isinstance(seq, int) and seq > self.last_seq:
            self.last_seq = seq
        return frame

    async def next_request(self) -> dict[str, Any]:
        while True:
            frame = await self.recv()
            if frame["type"] == "tool_request" and not frame.get("redelivered"):
                return frame
            if frame["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong", "nonce": frame.get("nonce")}))

    async def answer(self, call_id: str) -> None:
        await self.ws.send(json.dumps({"type": "tool_response", "id": call_id, "result": "ok"}))


async def main(port_a: int, port_b: int, samples: int, per_session: int) -> dict[str, Any]:
    figures: dict[str, list[float]] = {
        "steady": [],
        "reconnect, owner": [],
        "reconnect, non-owner": [],
        "steady, after the move": [],
    }
    done = 0
    while done < samples:
        count = min(per_session, samples - done)
        await one_session(port_a, port_b, count, figures)
        done += count
    return {name: percentiles(values) for name, values in figures.items()}


async def one_session(
    port_a: int, port_b: int, samples: int, figures: dict[str, list[float]]
) -> None:
    session = Session(f"b10-{time.time_ns()}")
    await session.open(port_a, resume=False)
    await session.ws.send(json.dumps({"type": "message", "content": f"calls {samples * 8 + 10}"}))
    request = await session.next_request()
    ports = [port_a, port_b]
    owner = 0
    for _ in range(samples):
        # Steady, on the owner.
        t0 = time.perf_counter()
        await session.answer(request["id"])
        request = await session.next_request()
        figures["steady"].append(time.perf_counter() - t0)
        for variant, target in (("reconnect, owner", owner), ("reconnect, non-owner", 1 - owner)):
            await session.ws.close()
            t0 = time.perf_counter()
            ready = await session.open(ports[target], resume=True)
            assert request["id"] in ready["resumed"]["pending_calls"], ready
            await session.answer(request["id"])
            request = await session.next_request()
            figures[variant].append(time.perf_counter() - t0)
            owner = target
        t0 = time.perf_counter()
        await session.answer(request["id"])
        request = await session.next_request()
        figures["steady, after the move"].append(time.perf_counter() - t0)
    await session.ws.send(json.dumps({"type": "bye"}))
    await session.ws.close()


if __name__ == "__main__":
    a, b, n = (int(x) for x in sys.argv[1:4])
    per_session = int(sys.argv[4]) if len(sys.argv) > 4 else n
    print(json.dumps(asyncio.run(main(a, b, n, per_session))), flush=True)
