"""What every `SessionStore` promises, run against the memory store and a real Redis.

Time is moved by the test, not waited for: the memory store gets a fake clock, and in Redis
every key of the test's namespace has its remaining TTL shortened by the same amount in one
atomic script (a key whose TTL would run out is deleted, as expiry would). So "9.9 s of a 10 s
TTL later" takes no time on either store. That Redis itself expires keys on time is tested in
test_redis_store.py, with TTLs of tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bridge.limits import SessionLimits
from bridge.protocol import RunStartedMessage, ToolRequestMessage
from bridge.session import Session
from bridge.store import MemoryStore, SessionStore
from bridge.testing.redis_server import RedisServer
from tests.store.support import store_on

# Shorten every TTL in a namespace by ARGV[2] ms; what would reach zero is gone.
_ELAPSE = """
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local left = redis.call('PTTL', key)
  if left > 0 then
    if left <= tonumber(ARGV[2]) then
      redis.call('DEL', key)
    else
      redis.call('PEXPIRE', key, left - tonumber(ARGV[2]))
    end
  end
end
return 0
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class StoreCase:
    store: SessionStore
    elapse: Callable[[float], Awaitable[None]]


@pytest.fixture(params=["memory", "redis"])
async def case(request: pytest.FixtureRequest) -> AsyncIterator[StoreCase]:
    if request.param == "memory":
        clock = Clock()

        async def advance(seconds: float) -> None:
            clock.now += seconds

        yield StoreCase(MemoryStore(clock), advance)
        return
    # Asked for by name so that the memory cases never start a Redis.
    server: RedisServer = request.getfixturevalue("redis_server")
    async with store_on(server) as store:

        async def shorten(seconds: float) -> None:
            await store.client.eval(_ELAPSE, 0, f"{store.namespace}*", round(seconds * 1000))

        yield StoreCase(store, shorten)


def session_record() -> dict[str, Any]:
    """A real record: tools, a conversation with a pending call, a run, a queue, frames."""
    session = Session("contract", clock=lambda: 1_700_000_000.0, limits=SessionLimits())
    session.greet(
        [
            {
                "name": "pick_colour",
                "description": "Ask the user to pick a colour ✓",
                "parameters": {"type": "object", "properties": {"hint": {"type": "string"}}},
            }
        ]
    )
    run = session.submit('what colour? ünïcode and "quotes"')
    assert run is not None
    session.submit("and then this")
    session.outbound.push(RunStartedMessage(run_id=run.id, content="what colour?"))
    session.outbound.push_token(run.id, "Let me ask ")
    session.outbound.push(
        ToolRequestMessage(
            id="call_1", run_id=run.id, name="pick_colour", arguments={}, timeout_ms=30_000
        )
    )
    run.partial.append("Let me ask ")
    return session.dump()


async def test_a_record_round_trips(case: StoreCase) -> None:
    store = case.store
    record = session_record()
    await store.put("s1", record, ttl_s=60)
    got = await store.get("s1")
    assert got == record
    assert await store.get("unknown") is None
    # What comes back is a record a session loads from, and dumps to the same record again.
    assert got is not None
    assert Session.load(got, clock=lambda: 1_700_000_000.0).dump() == record


async def test_odd_values_round_trip(case: StoreCase) -> None:
    record = {
        "text": 'nul \x00, emoji 🧪, rtl \u202e, quote " and backslash \\',
        "numbers": [0, -1, 2**53, 1.5, -0.25, 1e-9],
        "flags": [True, False, None],
        "nested": {"": {"deeper": [[], {}]}},
        "lone surrogate": "\ud800 stays",
    }
    await case.store.put("s1", record, ttl_s=60)
    assert await case.store.get("s1") == record


async def test_a_put_replaces_the_record_and_extends_its_life(case: StoreCase) -> None:
    store = case.store
    await store.put("s1", {"v": 1}, ttl_s=10)
    await case.elapse(8)
    await store.put("s1", {"v": 2}, ttl_s=10)
    await case.elapse(8)
    assert await store.get("s1") == {"v": 2}
    await case.elapse(2)
    assert await store.get("s1") is None


async def test_delete_forgets_the_record_and_the_lease(case: StoreCase) -> None:
    store = case.store
    await store.put("s1", {"v": 1}, ttl_s=60)
    assert await store.acquire("s1", "worker-a", ttl_s=60)
    await store.delete("s1")
    assert await store.get("s1") is None and await store.owner("s1") is None
    assert await store.acquire("s1", "worker-b", ttl_s=60)
    await store.delete("never-stored")


async def test_a_record_expires_after_its_own_ttl(case: StoreCase) -> None:
    store = case.store
    await store.put("short", {"n": 1}, ttl_s=5)
    await store.put("long", {"n": 2}, ttl_s=10)
    await case.elapse(4.9)
    assert await store.get("short") == {"n": 1}
    await case.elapse(0.1)
    assert await store.get("short") is None and await store.get("long") == {"n": 2}
    await case.elapse(4.9)
    assert await store.get("long") == {"n": 2}
    await case.elapse(0.1)
    assert await store.get("long") is None


async def test_a_record_put_already_expired_is_not_kept(case: StoreCase) -> None:
    await case.store.put("s1", {"v": 1}, ttl_s=60)
    await case.store.put("s1", {"v": 2}, ttl_s=0)
    assert await case.store.get("s1") is None


async def test_the_lease_has_one_owner(case: StoreCase) -> None:
    store = case.store
    assert await store.owner("s1") is None
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    assert not await store.acquire("s1", "worker-b", ttl_s=5)
    assert not await store.acquire("s1", "worker-b", ttl_s=5)
    assert await store.owner("s1") == "worker-a"
    # Leases of different sessions are independent.
    assert await store.acquire("s2", "worker-b", ttl_s=5)
    assert await store.owner("s2") == "worker-b"


async def test_of_many_racing_acquirers_exactly_one_wins(case: StoreCase) -> None:
    owners = [f"worker-{n}" for n in range(32)]
    won = await asyncio.gather(*(case.store.acquire("s1", o, ttl_s=5) for o in owners))
    assert sum(won) == 1
    assert await case.store.owner("s1") == owners[won.index(True)]


async def test_renewal_extends_the_lease(case: StoreCase) -> None:
    store = case.store
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    await case.elapse(4)
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    await case.elapse(4)
    assert await store.owner("s1") == "worker-a"
    assert not await store.acquire("s1", "worker-b", ttl_s=5)
    await case.elapse(1)
    assert await store.owner("s1") is None


async def test_a_lapsed_lease_is_taken_by_another_and_lost_to_its_holder(case: StoreCase) -> None:
    store = case.store
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    await case.elapse(5)
    assert await store.owner("s1") is None
    assert await store.acquire("s1", "worker-b", ttl_s=5)
    # The old holder comes back late: its renewal must not take the lease back.
    assert not await store.acquire("s1", "worker-a", ttl_s=5)
    assert await store.owner("s1") == "worker-b"


async def test_only_the_holder_releases(case: StoreCase) -> None:
    store = case.store
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    await store.release("s1", "worker-b")
    assert await store.owner("s1") == "worker-a"
    await store.release("s1", "worker-a")
    assert await store.owner("s1") is None
    assert await store.acquire("s1", "worker-b", ttl_s=5)
    # A late release by the previous holder leaves its successor's lease alone.
    await store.release("s1", "worker-a")
    assert await store.owner("s1") == "worker-b"
    await store.release("never-leased", "worker-a")


async def test_record_and_lease_expire_independently(case: StoreCase) -> None:
    store = case.store
    await store.put("s1", {"v": 1}, ttl_s=10)
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    await case.elapse(5)
    assert await store.owner("s1") is None and await store.get("s1") == {"v": 1}
    assert await store.acquire("s1", "worker-a", ttl_s=20)
    await case.elapse(5)
    assert await store.get("s1") is None and await store.owner("s1") == "worker-a"


async def test_a_put_replaces_every_part_of_the_record(case: StoreCase) -> None:
    # A record lacking parts the one before had (tools, turns) must not inherit them.
    store = case.store
    await store.put("s1", session_record(), ttl_s=60)
    await store.put("s1", {"v": 2}, ttl_s=60)
    assert await store.get("s1") == {"v": 2}
    await store.put("s1", {"tools": None, "conversation": [{"kind": "user"}]}, ttl_s=60)
    await store.put("s1", {"v": 3, "outbound": {"first": 5, "frames": [[1, "a"]]}}, ttl_s=60)
    assert await store.get("s1") == {"v": 3, "outbound": {"first": 5, "frames": [[1, "a"]]}}
