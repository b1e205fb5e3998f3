"""Two real workers on one Redis, no balancer between them and the test: a ticket fetched from
one worker opens a WebSocket on the other, and is refused when presented again to the first."""

from __future__ import annotations

import asyncio

from bridge.testing.redis_server import RedisServer
from tests.scaleout.support import start_workers, worker_env
from tests.security.access_support import hello, http, open_ws, refused_with

TOKEN = "scale-out-ticket-token"
BOUND_S = 30


async def test_a_ticket_from_one_worker_opens_a_socket_on_another_once(
    redis: RedisServer, cluster_name: str
) -> None:
    env = worker_env(redis.url, cluster_name, BRIDGE_TOKEN=TOKEN)
    a, b = await start_workers(2, env, model_url=None)
    try:
        async with asyncio.timeout(BOUND_S):
            asked = await http(
                f"{a.http_url}/ws-ticket", "POST", {"Authorization": f"Bearer {TOKEN}"}
            )
            assert asked.status == 200, asked.body
            ticket = asked.json()["ticket"]
            # Only the ticket: no token reaches worker B.
            ws = await open_ws(b.ws_url("ticketed") + f"?ticket={ticket}")
            ready = await hello(ws)
            assert ready["type"] == "ready" and ready["session_id"] == "ticketed", ready
            await ws.close()
            assert await refused_with(a.ws_url("again") + f"?ticket={ticket}") == 4401
    finally:
        for worker in (a, b):
            await asyncio.to_thread(worker.stop)
    # Both workers logged the handshakes (info), with the ticket redacted.
    logs = a.output() + b.output()
    assert "ticket=[redacted]" in logs
    assert ticket not in logs and TOKEN not in logs
