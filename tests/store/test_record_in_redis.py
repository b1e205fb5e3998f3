"""The record in parts on a real Redis: what `RedisStore.save` applies of a session's changes
reads back as exactly `Session.dump()`; a write is fenced by the lease and by the stored
lengths, and whatever it refuses leaves every key as it was; the head alone decides access;
and a write costs what changed, not what the session holds.

The session is moved by the steps of tests/core/test_record_parts.py, where the same changes
are applied to a model of the script without Redis.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.calls import TerminalStatus
from bridge.conversation import UserTurn
from bridge.limits import SessionLimits
from bridge.protocol import RunStartedMessage
from bridge.record import LISTS, Changes
from bridge.redis_store import RedisStore
from bridge.testing.redis_server import RedisServer
from tests.core.test_record_parts import Driver, afters, ops, write_bytes
from tests.store.support import store_on

SID = "s-parts"
TTL_S = 60.0
LEASE_S = 60.0


async def write(store: RedisStore, driver: Driver, writer: str = "worker-a") -> Changes:
    """A write as the hub makes one: the changes since the mark, then the mark moved on."""
    session = driver.session
    changes = session.changes()
    assert await store.save(SID, changes, TTL_S, writer=writer, lease_s=LEASE_S) == "saved"
    session.stored = changes.mark
    assert await store.get(SID) == session.dump()
    return changes


async def raw(store: RedisStore) -> tuple[Any, ...]:
    """Every key of the session as Redis holds it, the owner included."""
    client, keys = store.client, store.keys_of(SID)
    lists = [await client.lrange(key, 0, -1) for key in keys[2:]]
    return await client.get(keys[0]), await client.hgetall(keys[1]), lists


def grow(driver: Driver, n: int = 1) -> None:
    """Something added to every list and the head, no tool change: a write that is not whole."""
    for i in range(n):
        for op in (
            ("user", f"more {i}"),
            ("push", 0, "more"),
            ("call", "q"),
            ("answer", 0, False),
            ("ask", "q"),
            ("decide", 0),
        ):
            driver.do(op)


async def started(store: RedisStore) -> Driver:
    driver = Driver()
    driver.session.greet([{"name": "alpha", "description": "a", "parameters": {"type": "object"}}])
    grow(driver, 3)
    assert (await write(store, driver)).whole
    grow(driver)
    assert not (await write(store, driver)).whole
    return driver


# Random steps ---------------------------------------------------------------------------------


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(plan=st.lists(st.tuples(ops, afters), min_size=150, max_size=300))
async def test_saved_changes_read_back_as_the_dump(
    redis_server: RedisServer, plan: list[tuple[Any, str | None]]
) -> None:
    async with store_on(redis_server) as store:
        driver = Driver()
        await write(store, driver)
        for op, after in plan:
            driver.do(op)
            if after == "rewrite":
                driver.session.stored = None
            if after is not None:
                await write(store, driver)
            if after == "reload":
                record = await store.get(SID)
                assert record is not None
                driver.take_over(record)
        await write(store, driver)
        assert await store.owner(SID) == "worker-a"


# Fencing --------------------------------------------------------------------------------------


async def test_a_writer_without_the_lease_changes_nothing(redis_store: RedisStore) -> None:
    store = redis_store
    driver = await started(store)
    await store.release(SID, "worker-a")
    assert await store.acquire(SID, "worker-b", ttl_s=LEASE_S)
    before, record = await raw(store), await store.get(SID)
    grow(driver)
    changes = driver.session.changes()
    assert not changes.whole
    assert await store.save(SID, changes, TTL_S, writer="worker-a", lease_s=LEASE_S) == (
        "not owner"
    )
    assert await raw(store) == before and await store.get(SID) == record
    # Not even a whole write: the lease decides, not the shape of the write.
    driver.session.stored = None
    whole = driver.session.changes()
    assert whole.whole
    assert await store.save(SID, whole, TTL_S, writer="worker-a", lease_s=LEASE_S) == "not owner"
    assert await raw(store) == before and await store.owner(SID) == "worker-b"
    # The holder's write of the same changes goes through.
    assert await store.save(SID, changes, TTL_S, writer="worker-b", lease_s=LEASE_S) == "saved"
    assert await store.get(SID) == driver.session.dump()


async def test_a_stale_mark_is_lost_and_a_whole_write_recovers(redis_store: RedisStore) -> None:
    store = redis_store
    driver = await started(store)
    grow(driver)
    first = driver.session.changes()
    assert await store.save(SID, first, TTL_S, writer="worker-a", lease_s=LEASE_S) == "saved"
    # The mark is not moved on (the answer to that write was lost, say): the next changes
    # would append once more what Redis already has.
    grow(driver)
    before = await raw(store)
    again = driver.session.changes()
    assert not again.whole
    assert await store.save(SID, again, TTL_S, writer="worker-a", lease_s=LEASE_S) == "lost"
    assert await raw(store) == before
    driver.session.stored = None
    assert (await write(store, driver)).whole
    grow(driver)
    assert not (await write(store, driver)).whole


@pytest.mark.parametrize("gone", ["the lease", "everything"])
async def test_a_lost_lease_refuses_changes_and_takes_a_whole_write(
    redis_store: RedisStore, gone: str
) -> None:
    store = redis_store
    driver = await started(store)
    # As after a Redis restarted empty: the lease is gone, and maybe everything it guarded.
    keys = store.keys_of(SID)
    await store.client.delete(*(keys if gone == "everything" else keys[:1]))
    before = await raw(store)
    grow(driver)
    changes = driver.session.changes()
    assert not changes.whole
    assert await store.save(SID, changes, TTL_S, writer="worker-a", lease_s=LEASE_S) == "lost"
    assert await raw(store) == before and await store.owner(SID) is None
    driver.session.stored = None
    assert (await write(store, driver)).whole
    assert await store.owner(SID) == "worker-a"
    assert 0 < await store.client.pttl(keys[0]) <= LEASE_S * 1000
    grow(driver)
    assert not (await write(store, driver)).whole


# Access from the head ---------------------------------------------------------------------------


def _touch(driver: Driver, how: str) -> None:
    session = driver.session
    if how == "turn":
        session.conversation.add(UserTurn("hi"))
    elif how == "run":
        session.submit("hi")
        session.submit("and this, queued")
    elif how == "call":
        driver.do(("call", "q"))
    elif how == "approval":
        driver.do(("ask", "q"))
    elif how == "frames only":
        # Traffic alone (a pong, a tools report) leaves a session untouched.
        session.outbound.push(RunStartedMessage(run_id="r", content="x"))
        driver.do(("call", "q"))
        driver.do(("answer", 0, False))


# Lone surrogates ----------------------------------------------------------------------------------


async def test_lone_surrogates_in_turns_and_frames_come_back_exactly(
    redis_store: RedisStore,
) -> None:
    store = redis_store
    driver = Driver()
    driver.session.outbound.push(RunStartedMessage(run_id="r", content="x"))
    record = driver.session.dump()
    # A frame the session itself writes has none (it is cleaned for the socket), but a record
    # may hold one, and whatever it holds has to come back as it was.
    record["outbound"]["frames"][0][1] = '{"seq":1,"note":"lone \ud800 here"}'
    driver.take_over(record)
    driver.session.stored = None
    driver.session.conversation.add(UserTurn("lone \udfff here"))
    await write(store, driver)
    driver.session.conversation.add(UserTurn("\ud800\ud800 and \udbff"))
    driver.session.outbound.push(RunStartedMessage(run_id="r", content="y"))
    changes = await write(store, driver)
    assert not changes.tails["turns"].reset and not changes.tails["frames"].reset
    keys = dict(zip(LISTS, store.keys_of(SID)[2:], strict=True))
    frames = await store.client.lrange(keys["frames"], 0, -1)
    turns = await store.client.lrange(keys["turns"], 0, -1)
    # Kept as the bytes Python's "surrogatepass" gives, not replaced on the way.
    assert b"lone \xed\xa0\x80 here" in frames[0]
    assert b"\xed\xa0\x80\xed\xa0\x80 and \xed\xaf\xbf" in turns[-1]
    got = await store.get(SID)
    assert got is not None
    assert got["conversation"][-1]["content"] == "\ud800\ud800 and \udbff"
    assert got["outbound"]["frames"][0][1] == '{"seq":1,"note":"lone \ud800 here"}'


# The cost of a write ------------------------------------------------------------------------------

# Bounds a long session passes well before the 1000th step, and a window large enough that the
# record is many times larger than one step's write.
GROWTH = SessionLimits(
    max_conversation_turns=120,
    max_conversation_chars=0,
    replay_max_messages=100,
    replay_max_bytes=100_000,
)


async def test_the_cost_of_a_write_does_not_grow_with_the_session(redis_store: RedisStore) -> None:
    store = redis_store
    driver = Driver(GROWTH, remember=100)
    driver.do(("greet", ["alpha", "beta"]))
    await write(store, driver)
    sizes: dict[int, int] = {}
    for step in range(1, 1001):
        for op in (
            ("submit", "please do it"),
            ("user", "please do it"),
            ("push", 0, "please do it"),
            ("token", True, "thinking"),
            ("token", True, " more"),
            ("assistant", "calling", 1),
            ("call", "q"),
            ("push", 2, "q"),
            ("answer", 0, True),
            ("result", TerminalStatus.OK, "done", False),
            ("ask", "q"),
            ("decide", 0),
            ("step", "text", False),
            ("finish",),
        ):
            driver.do(op)
        changes = driver.session.changes()
        assert not changes.whole and changes.tools is None
        assert await store.save(SID, changes, TTL_S, writer="worker-a", lease_s=LEASE_S) == (
            "saved"
        )
        driver.session.stored = changes.mark
        sizes[step] = write_bytes(changes)
        if step % 250 == 0 or step == 10:
            assert await store.get(SID) == driver.session.dump()
    record = json.dumps(driver.session.dump(), ensure_ascii=False)
    lengths = [await store.client.llen(key) for key in store.keys_of(SID)[2:]]
    # Every list reached its bound and has been dropping from its front since.
    assert lengths == [120, 100, 100, 100]
    assert driver.session.last_seq >= 3000 and driver.session.conversation.added >= 3000
    # A step that sends the same things costs the same bytes, the 1000th as the 10th (ids
    # and counters grow by a digit or two), while the record is many times one write.
    assert sizes[1000] <= 1.25 * sizes[10]
    assert len(record) > 20 * sizes[1000]
