"""Warm moves on a real Redis: a worker that kept a copy of a session's lists when it let go of
it claims the session back reading only what was added to each list since (`ARRIVE` with the
copy's counts), and the session put together from the copy and those is the session a cold
load gives, counts and all, and writes on from there exactly. Whenever the stored lists do not
extend the copy (counts ahead of or too far behind the store, another session under the same
id, a record without the counts), the claim reads them whole.

The session is moved by the steps of tests/core/test_record_parts.py, on each worker in turn.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import websockets
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge.record import LISTS, Changes
from bridge.redis_store import Arrival, RedisStore
from bridge.server.departed import Departed, complete, copy_of
from bridge.session import Session
from bridge.testing import ScriptedModel, call
from bridge.testing.redis_server import RedisServer
from tests.core.test_record_parts import GROW, LIMITS, REMEMBER, Driver, afters, ops
from tests.store.support import store_on
from tests.store.test_cluster import recv
from tests.store.test_parking import (
    BOUND_S,
    answered,
    assert_one_result,
    hello,
    left_with_a_pending_call,
    polled,
    workers,
)

SID = "s-parts"  # the Driver's session
TTL_S = 60.0
LEASE_S = 60.0
PRINCIPAL = "anyone"  # a Driver's session has no owner
# Where each list sits in a record (as `bridge.record` puts it).
PATHS = {
    "turns": (None, "conversation"),
    "frames": ("outbound", "frames"),
    "finished": ("calls", "finished"),
    "decided": ("approvals", "decided"),
}


# Workers ----------------------------------------------------------------------------------------


def on_worker(record: Mapping[str, Any] | None, after: Driver | None = None) -> Driver:
    """A driver of the session a worker loads from `record` (cold), its clock and model ids
    going on from `after`'s."""
    assert record is not None
    driver = Driver()
    if after is not None:
        driver.clock.now, driver.models = after.clock.now, after.models
    driver.session = loaded(record, driver)
    driver.session.stored = driver.session.mark()
    return driver


def loaded(record: Mapping[str, Any], driver: Driver) -> Session:
    session = Session.load(record, clock=driver.clock, limits=LIMITS)
    # A loaded session remembers the default 1024 finished calls and decisions; the drivers
    # remember a few, so those lists drop their oldest items on every worker too.
    session.calls._remember = REMEMBER
    session.approvals._remember = REMEMBER
    return session


async def write(store: RedisStore, session: Session, writer: str) -> Changes:
    """A write as the hub makes one (fenced by `writer`'s lease), then the mark moved on."""
    changes = session.changes()
    assert await store.save(SID, changes, TTL_S, writer=writer, lease_s=LEASE_S) == "saved"
    session.stored = changes.mark
    assert await store.get(SID) == session.dump()
    return changes


async def run(store: RedisStore, driver: Driver, plan: Sequence[Any], writer: str) -> None:
    """The steps on one worker, written as `afters` says, and written at the end."""
    for step, after in plan:
        for op in step:
            driver.do(op)
        if after == "rewrite":
            driver.session.stored = None
        if after is not None:
            await write(store, driver.session, writer)
        if after == "reload":
            # The worker loads the session again, as it would after a restart of its own.
            record = await store.get(SID)
            assert record is not None
            driver.session = loaded(record, driver)
            driver.session.stored = driver.session.mark()
    await write(store, driver.session, writer)


async def pass_lease(store: RedisStore, holder: str, to: str) -> None:
    await store.release(SID, holder)
    assert await store.owner(SID) is None
    assert await store.acquire(SID, to, LEASE_S)


async def claim(store: RedisStore, claimer: str, token: str, copy: Departed | None) -> Arrival:
    arrival = await store.arrive(
        SID,
        claimer,
        LEASE_S,
        principal=PRINCIPAL,
        token=token,
        ask=f"handover {claimer} {SID}",
        held=None if copy is None else copy.held,
        counting="" if copy is None else copy.counting,
    )
    assert arrival.granted and arrival.record is not None, arrival
    return arrival


def put_together(arrival: Arrival, copy: Departed | None, driver: Driver) -> Session:
    """What the hub's `_loaded` does with an arrival: load, complete from the copy, mark."""
    assert arrival.record is not None
    session = loaded(arrival.record, driver)
    if arrival.since:
        assert copy is not None
        complete(session, copy, arrival.since)
    session.stored = session.mark()
    return session


def expected_since(
    held: Mapping[str, tuple[int, int]], stored: Mapping[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """Per list the claim can read in part: (dropped, new items), from the counts alone."""
    found = {}
    for name in LISTS:
        (was_added, was_kept), (added, length) = held[name], stored[name]
        new = added - was_added
        dropped = was_kept + new - length
        if 0 <= new <= length and 0 <= dropped <= was_kept:
            found[name] = (dropped, new)
    return found


def assert_same(session: Session, cold: Session) -> None:
    """The session put together is the one loaded cold, down to what the bounds count."""
    assert session.dump() == cold.dump()
    assert session.mark().lists == cold.mark().lists
    conversation, other = session.conversation, cold.conversation
    assert (conversation.added, conversation.chars, conversation.exchange_start) == (
        other.added,
        other.chars,
        other.exchange_start,
    )
    assert (session.outbound.size_bytes, session.outbound.first_seq) == (
        cold.outbound.size_bytes,
        cold.outbound.first_seq,
    )
    assert (session.calls.finished_added, session.approvals.decided_added) == (
        cold.calls.finished_added,
        cold.approvals.decided_added,
    )


def same_everywhere(op: Sequence[Any]) -> Sequence[Any]:
    """A step two copies of a session take alike (an untrusted result gets a random fence)."""
    if op[0] == "result":
        return (*op[:3], False)
    return op


async def go_on_alike(
    store: RedisStore, warm: Driver, cold: Driver, plan: Sequence[Any], writer: str
) -> None:
    """The same steps on the session put together and on the one loaded cold: they stay
    equal, and the former's writes (from its mark) read back as its dump."""
    for step, after in plan:
        for op in map(same_everywhere, step):
            warm.do(op)
            cold.do(op)
            assert warm.session.dump() == cold.session.dump()
        if after is not None:
            await write(store, warm.session, writer)
    await write(store, warm.session, writer)


# The central property ------------------------------------------------------------------------

# The steps of the record-parts tests, with more of those that add to the lists, so that every
# list passes its bound (and reads whole: more added elsewhere than is kept) in many examples.
# A step is a few ops; it is written (or not) as `afters` says.
growing = st.sampled_from(LISTS).map(lambda name: GROW[name])
steps = st.tuples(st.one_of(ops.map(lambda op: [op]), growing), afters)
phase = st.lists(steps, min_size=3, max_size=50)


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    first=st.lists(steps, min_size=20, max_size=80),
    after_copy=phase,
    elsewhere=st.lists(phase, min_size=1, max_size=3),
    back=st.lists(steps, max_size=25),
)
async def test_a_session_put_together_from_a_copy_is_the_stored_session(
    redis_server: RedisServer,
    first: list[Any],
    after_copy: list[Any],
    elsewhere: list[list[Any]],
    back: list[Any],
) -> None:
    async with store_on(redis_server) as store:
        # On "a": a first write (whole, taking the free lease), steps, and a copy of its lists
        # at a write; "a" may go on writing after the copy before it lets go.
        a = Driver()
        await write(store, a.session, "a")
        await run(store, a, first, "a")
        copy = copy_of(a.session)
        assert copy is not None
        assert dict(copy.held) == dict(a.session.stored.lists)  # type: ignore[union-attr]
        await run(store, a, after_copy, "a")
        token = a.session.resume_token
        # On other workers in turn, each loading what the last one stored.
        holder, driver = "a", a
        for n, plan in enumerate(elsewhere):
            worker = "bc"[n % 2]
            await pass_lease(store, holder, worker)
            driver = on_worker(await store.get(SID), driver)
            await run(store, driver, plan, worker)
            holder = worker
        await store.release(SID, holder)

        # Back on "a", with the copy.
        stored = await store.get(SID)
        cold = on_worker(stored, driver)
        arrival = await claim(store, "a", token, copy)
        assert arrival.how == "taken"
        predicted = expected_since(copy.held, cold.session.mark().lists)
        assert {name: (d, len(items)) for name, (d, items) in arrival.since.items()} == predicted
        for name in LISTS:
            dropped, new = predicted.get(name, (-1, -1))
            event(f"{name}: {'whole' if dropped < 0 else 'dropped' if dropped else 'kept all'}")
            event(f"{name}: {'some new' if new > 0 else 'none new'}")
        assert arrival.record is not None and stored is not None
        for name, (parent, key) in PATHS.items():
            part = arrival.record if parent is None else arrival.record[parent]
            whole = stored if parent is None else stored[parent]
            # A list read in part comes with no items in the record; the others come whole.
            assert part[key] == ([] if name in arrival.since else whole[key]), name
        warm = Driver()
        warm.clock.now, warm.models = driver.clock.now, driver.models
        warm.session = put_together(arrival, copy, warm)
        assert_same(warm.session, cold.session)
        # It writes on from its mark, and goes on as the cold one does.
        await go_on_alike(store, warm, cold, back, "a")


# By hand: what comes back in part ----------------------------------------------------------------


def grow(driver: Driver, times: int, names: Sequence[str] = LISTS) -> None:
    for _ in range(times):
        for name in names:
            for op in GROW[name]:
                driver.do(op)


async def left_with_a_copy(store: RedisStore) -> tuple[Driver, Departed]:
    """A session past every bound, written by "a", which keeps a copy and lets go."""
    a = Driver()
    a.do(("greet", ["alpha"]))
    grow(a, 10)
    await write(store, a.session, "a")
    copy = copy_of(a.session)
    assert copy is not None
    assert {name: kept for name, (_, kept) in copy.held.items()} == {
        "turns": LIMITS.max_conversation_turns,
        "frames": LIMITS.replay_max_messages,
        "finished": REMEMBER,
        "decided": REMEMBER,
    }
    await store.release(SID, "a")
    return a, copy


async def test_a_claim_back_reads_only_what_was_added_since_the_copy(
    redis_store: RedisStore,
) -> None:
    store = redis_store
    a, copy = await left_with_a_copy(store)
    assert await store.acquire(SID, "b", LEASE_S)
    b = on_worker(await store.get(SID), a)
    grow(b, 2)  # two items more in every list, and each bound drops the two oldest
    changes = await write(store, b.session, "b")
    assert not changes.whole
    await store.release(SID, "b")
    arrival = await claim(store, "a", a.session.resume_token, copy)
    assert arrival.how == "taken"
    assert {name: (dropped, len(items)) for name, (dropped, items) in arrival.since.items()} == (
        dict.fromkeys(LISTS, (2, 2))
    )
    # Only the new items crossed: the newest of each list as "b" has it.
    assert arrival.since["decided"][1] == list(b.session.approvals.decided())[-2:]
    assert arrival.record is not None
    assert arrival.record["conversation"] == [] and arrival.record["outbound"]["frames"] == []
    warm = Driver()
    warm.session = put_together(arrival, copy, warm)
    cold = on_worker(await store.get(SID), b)
    assert_same(warm.session, cold.session)
    # The next write sends only what changed since: no list reset, no tools.
    grow(warm, 1)
    changes = await write(store, warm.session, "a")
    assert changes.tools is None and not changes.whole
    assert all(not part.reset and len(part.items) == 1 for part in changes.tails.values())


async def test_a_claim_back_with_nothing_new_reads_no_list_items(redis_store: RedisStore) -> None:
    store = redis_store
    a, copy = await left_with_a_copy(store)
    # Another worker ran it without adding to any list: a run started, a call is pending.
    assert await store.acquire(SID, "b", LEASE_S)
    b = on_worker(await store.get(SID), a)
    b.do(("submit", "go"))
    b.do(("call", "q"))
    await write(store, b.session, "b")
    await store.release(SID, "b")
    arrival = await claim(store, "a", a.session.resume_token, copy)
    assert arrival.since == dict.fromkeys(LISTS, (0, []))
    warm = Driver()
    warm.session = put_together(arrival, copy, warm)
    assert_same(warm.session, on_worker(await store.get(SID)).session)
    assert warm.session.run is not None and len(warm.session.calls.pending()) == 1


async def test_a_claim_back_after_more_was_added_than_is_kept_reads_that_list_whole(
    redis_store: RedisStore,
) -> None:
    store = redis_store
    a, copy = await left_with_a_copy(store)
    assert await store.acquire(SID, "b", LEASE_S)
    b = on_worker(await store.get(SID), a)
    grow(b, 3, ["turns", "frames"])
    grow(b, REMEMBER + 1, ["finished"])  # none of the copy's finished calls is left
    await write(store, b.session, "b")
    await store.release(SID, "b")
    arrival = await claim(store, "a", a.session.resume_token, copy)
    assert {name: (dropped, len(items)) for name, (dropped, items) in arrival.since.items()} == {
        "turns": (3, 3),
        "frames": (3, 3),
        "decided": (0, 0),
    }
    warm = Driver()
    warm.session = put_together(arrival, copy, warm)
    assert_same(warm.session, on_worker(await store.get(SID)).session)


# Falls back to whole lists --------------------------------------------------------------------


def shifted(held: Mapping[str, tuple[int, int]], by: int) -> dict[str, tuple[int, int]]:
    return {name: (added + by, kept) for name, (added, kept) in held.items()}


@pytest.mark.parametrize(
    "case", ["counts ahead", "counts far behind", "another session", "no added counts"]
)
async def test_a_copy_the_store_does_not_extend_gets_whole_lists(
    redis_store: RedisStore, case: str
) -> None:
    store = redis_store
    a, copy = await left_with_a_copy(store)
    token = a.session.resume_token
    if case == "counts ahead":
        copy = dataclasses.replace(copy, held=shifted(copy.held, 1))
    elif case == "counts far behind":
        copy = dataclasses.replace(copy, held=shifted(copy.held, -100))
    elif case == "another session":
        # Deleted, and started again under the same id: fewer items ever added than the copy.
        await store.delete(SID)
        other = Driver()
        grow(other, 3)
        await write(store, other.session, "b")
        await store.release(SID, "b")
        token = other.session.resume_token
        assert expected_since(copy.held, other.session.mark().lists) == {}
    else:
        # As a worker of an earlier version writes it: no counts of items ever added.
        record = a.session.dump()
        del record["added"]
        await store.put(SID, record, TTL_S)
    stored = await store.get(SID)
    arrival = await claim(store, "a", token, copy)
    if case == "no added counts":
        # Frames count by seq, which every record has: they alone may still be read in part.
        assert set(arrival.since) <= {"frames"}
        assert arrival.since == {"frames": (0, [])}
    else:
        assert arrival.since == {}
        assert arrival.record == stored
    warm = Driver()
    warm.session = put_together(arrival, copy, warm)
    cold = on_worker(stored)
    if case == "no added counts":
        # Each load of a record that kept no counts starts a counting of its own, so that no
        # copy made under an earlier one is taken to continue it.
        assert warm.session.counting != copy.counting
        assert warm.session.counting != cold.session.counting
        warm.session.counting = cold.session.counting
    assert_same(warm.session, cold.session)


async def test_counts_started_afresh_by_a_worker_of_an_earlier_version_are_not_taken_for_the_copy(
    redis_store: RedisStore,
) -> None:
    """A worker of an earlier version writes no counts; a current worker loading its record
    counts from zero again, and after enough turns its counts would look like a continuation
    of a copy kept before. The counting's name tells them apart."""
    store = redis_store
    a, copy = await left_with_a_copy(store)
    older = on_worker(await store.get(SID), a)
    record = older.session.dump()
    del record["added"]
    await store.put(SID, record, TTL_S)
    assert await store.acquire(SID, "c", LEASE_S)
    current = on_worker(await store.get(SID), older)
    for i in range(12):
        current.do(("user", f"c{i}"))
    await write(store, current.session, "c")
    await store.release(SID, "c")
    # The counts alone would pass for a continuation of the copy.
    held, stored = copy.held, current.session.mark().lists
    assert "turns" in expected_since(held, stored)
    arrival = await claim(store, "a", a.session.resume_token, copy)
    assert "turns" not in arrival.since
    warm = Driver()
    warm.session = put_together(arrival, copy, warm)
    assert_same(warm.session, on_worker(await store.get(SID)).session)


# Hub level: A, then B, then A again -----------------------------------------------------------


async def test_a_session_back_on_a_worker_it_left_is_put_together_from_its_copy(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ScriptedModel([["Looking. ", call("lookup", {"q": "x"})], ["Found it."]])
    sid = "warm-move"
    async with workers(redis_server, model) as ((a, hub_a, cluster_a), (b, hub_b, cluster_b)):
        claims: list[tuple[bool, bool, str, dict[str, tuple[int, int]]]] = []
        whole: list[dict[str, int]] = []
        claim = cluster_a.claim

        async def recorded(session_id: str, **how: Any) -> Arrival:
            arrival = await claim(session_id, **how)
            since = {
                name: (dropped, len(items)) for name, (dropped, items) in arrival.since.items()
            }
            claims.append((how["held"] is not None, how["running"], arrival.how, since))
            stored = await cluster_a.store.get(session_id)
            lists = {} if stored is None else stored_lists(stored)
            whole.append({name: len(items) for name, items in lists.items()})
            return arrival

        monkeypatch.setattr(cluster_a, "claim", recorded)
        async with asyncio.timeout(BOUND_S):
            token, request = await left_with_a_pending_call(a, sid)
            await polled(lambda: sid in cluster_a.parked, "the first worker parked the session")
            # The client lands on B, sees its call still pending there, and leaves again.
            async with websockets.connect(b.ws_url(sid)) as ws:
                await ws.send(hello(token, request["seq"]))
                ready = await recv(ws)
                assert ready["type"] == "ready", ready
                assert ready["resumed"]["pending_calls"] == [request["id"]]
            # A finds out at its next renewal, and keeps a copy of what it let go of.
            await polled(lambda: hub_a.runtime(sid) is None, "the first worker let go")
            assert hub_a._departed is not None and len(hub_a._departed) == 1
            await polled(lambda: sid in cluster_b.parked, "the second worker parked the session")
            # Back on A: the call is answered there, its handler run once.
            ran: list[str] = []
            rest = await answered(a, sid, token, request, ran)
            await polled(lambda: hub_b.runtime(sid) is None, "the second worker let go")
    assert ran == ["x"]
    assert_one_result(model, rest, request["id"])
    # The first claim at A made the session; the second read every list in part, from A's copy.
    assert [c[:3] for c in claims] == [(False, False, "taken"), (True, False, "unparked")]
    since = claims[1][3]
    assert set(since) == set(LISTS)
    assert since["turns"] == (0, 0)  # nothing was said on B: the turns all came from the copy
    assert sum(new for _, new in since.values()) < sum(whole[1].values())
    assert whole[1]["turns"] > 0 and whole[1]["frames"] > 0


def stored_lists(record: Mapping[str, Any]) -> dict[str, list[Any]]:
    return {
        name: (record if parent is None else record[parent])[key]
        for name, (parent, key) in PATHS.items()
    }
