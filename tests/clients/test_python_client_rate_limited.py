"""The Python client after a `4429` close: it waits as the reason asks, never at once."""

from __future__ import annotations

import asyncio
import time

from bridge_client import BridgeClient, rate_limited_delay
from tests.clients.scripted_peer import ScriptedPeerServer, ready

BOUND_S = 10


def test_the_delay_honours_the_reason_and_a_floor() -> None:
    no_jitter = lambda: 0.0  # noqa: E731
    assert (
        rate_limited_delay(
            "kept sending past the rate limit; retry in 12 s", floor_s=5, rand=no_jitter
        )
        == 12
    )
    assert rate_limited_delay("too many connections; retry in 1 s", floor_s=5, rand=no_jitter) == 5
    assert rate_limited_delay("try again in a minute", floor_s=5, rand=no_jitter) == 60
    assert rate_limited_delay("", floor_s=5, rand=no_jitter) == 5
    assert rate_limited_delay("retry in 99999 s", floor_s=5, rand=no_jitter) == 600
    # Jitter adds at most a quarter.
    assert rate_limited_delay("retry in 8 s", floor_s=1, rand=lambda: 1.0) == 10


async def reconnect_gap(close_code: int, reason: str) -> float:
    """Seconds between the server's close and the client's next connection."""
    async with ScriptedPeerServer() as server:
        client = BridgeClient(
            server.url, backoff_base_s=0.01, backoff_cap_s=0.05, rate_limited_backoff_s=0.4
        )
        async with asyncio.timeout(BOUND_S):
            connecting = asyncio.create_task(client.connect())
            peer = await server.accept()
            await peer.send(ready())
            await connecting
            closed_at = time.monotonic()
            await peer.ws.close(close_code, reason)
            again = await server.accept()
            gap = time.monotonic() - closed_at
            await again.send(ready())
            await client.close()
    return gap


async def test_a_rate_limited_close_waits_for_the_floor_or_the_reason() -> None:
    # A plain drop is retried at once; 4429 waits the floor, or what the reason says.
    assert await reconnect_gap(1011, "internal error") < 0.3
    assert await reconnect_gap(4429, "too many connections from this address") >= 0.4
    assert await reconnect_gap(4429, "this address is over its rate limit; retry in 1 s") >= 1.0
