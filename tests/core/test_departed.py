"""The copies a worker keeps of sessions it let go of (bridge/server/departed.py): kept only
while their lists are exactly as stored, given back only to the session's resume token and
only while fresh, bounded in bytes with the oldest going first; and a conversation carried on
from a copy counts its size and its exchange in progress as one counted from scratch.

No event loop, no I/O (tests/store/test_departed_in_redis.py puts a session together from a
copy and what Redis adds to it).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.calls import TerminalStatus
from bridge.conversation import AssistantTurn, Conversation, ToolCall, Turn, UserTurn, make_result
from bridge.record import LISTS
from bridge.server.departed import DepartedSessions, copy_of, stored_lists
from tests.core.test_record_parts import GROW, Applier, Driver, save

KEEP_S = 100.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def written(session_id: str = "s-parts", n: int = 2) -> Driver:
    """A session with something in every list, its last changes written to a store."""
    driver = Driver()
    driver.session.id = session_id
    for _ in range(n):
        for name in LISTS:
            for op in GROW[name]:
                driver.do(op)
    save(driver, Applier())
    return driver


def copies(max_bytes: int = 10**9, clock: Clock | None = None) -> DepartedSessions:
    return DepartedSessions(max_bytes=max_bytes, keep_s=KEEP_S, clock=clock or Clock())


# Keep and take ----------------------------------------------------------------------------------


def test_a_kept_copy_is_taken_once_with_the_sessions_lists() -> None:
    session = written().session
    departed = copies()
    assert departed.keep(session)
    assert len(departed) == 1 and departed.bytes > 0
    copy = departed.take(session.id, session.resume_token)
    assert copy is not None
    assert copy.token == session.resume_token
    assert session.stored is not None
    assert dict(copy.held) == dict(session.mark().lists) == dict(session.stored.lists)
    assert list(copy.turns) == session.conversation.turns
    assert list(copy.frames) == list(session.outbound.frames())
    assert list(copy.finished) == list(session.calls.finished())
    assert list(copy.decided) == list(session.approvals.decided())
    assert (copy.chars, copy.exchange_start) == (
        session.conversation.chars,
        session.conversation.exchange_start,
    )
    # Taken means gone: a second claim of the same session finds nothing.
    assert len(departed) == 0 and departed.bytes == 0
    assert departed.take(session.id, session.resume_token) is None


def test_a_bound_of_zero_keeps_nothing_and_reads_nothing_in_part() -> None:
    """`BRIDGE_SESSION_COPIES_BYTES=0`: every move reads the record whole, even on the worker
    that still runs a session it parked (the hub asks `reads_in_part` before it makes a copy)."""
    session = written().session
    assert copies().reads_in_part
    departed = copies(max_bytes=0)
    assert not departed.reads_in_part
    assert not departed.keep(session)
    assert len(departed) == 0 and departed.bytes == 0
    assert departed.take(session.id, session.resume_token) is None


@pytest.mark.parametrize("token", [None, "not the token", ""])
def test_a_take_without_the_sessions_token_gets_nothing_and_drops_the_copy(
    token: str | None,
) -> None:
    session = written().session
    departed = copies()
    assert departed.keep(session)
    assert departed.take(session.id, token) is None
    assert len(departed) == 0 and departed.bytes == 0
    # The right token comes too late: the copy went with the wrong one.
    assert departed.take(session.id, session.resume_token) is None


def test_a_take_of_a_session_never_kept_gets_nothing() -> None:
    session = written().session
    departed = copies()
    assert departed.keep(session)
    assert departed.take("another", session.resume_token) is None
    assert len(departed) == 1


def test_a_copy_expires_after_its_time_and_is_dropped() -> None:
    clock = Clock()
    departed = copies(clock=clock)
    session = written().session
    assert departed.keep(session)
    clock.now += KEEP_S - 0.001
    copy = departed.take(session.id, session.resume_token)
    assert copy is not None and copy.until == 1000.0 + KEEP_S
    assert departed.keep(session)  # kept again, now until now + KEEP_S
    clock.now += KEEP_S
    assert departed.take(session.id, session.resume_token) is None
    assert len(departed) == 0 and departed.bytes == 0


def test_an_expired_copy_goes_when_another_is_kept() -> None:
    clock = Clock()
    departed = copies(clock=clock)
    first, second = written("one").session, written("two").session
    assert departed.keep(first)
    clock.now += KEEP_S
    assert departed.keep(second)
    assert len(departed) == 1
    assert departed.bytes == copy_of(second).size  # type: ignore[union-attr]
    assert departed.take(second.id, second.resume_token) is not None


def test_the_byte_bound_evicts_the_oldest_copies_first() -> None:
    sessions = [written(f"s{i}").session for i in range(4)]
    sizes = [copy_of(s).size for s in sessions]  # type: ignore[union-attr]
    assert len(set(sizes)) == 1  # the same shape: each costs the same
    size = sizes[0]
    departed = copies(max_bytes=2 * size + size // 2)
    for session in sessions[:2]:
        assert departed.keep(session)
    assert (len(departed), departed.bytes) == (2, 2 * size)
    # Kept again, the first is the newest now: the second is the oldest.
    assert departed.keep(sessions[0])
    assert departed.keep(sessions[2])
    assert (len(departed), departed.bytes) == (2, 2 * size)
    assert departed.take(sessions[1].id, sessions[1].resume_token) is None
    assert departed.bytes == 2 * size
    assert departed.keep(sessions[3])
    # The first (kept before the third) went; the third and the fourth are there.
    assert departed.take(sessions[0].id, sessions[0].resume_token) is None
    for session in sessions[2:]:
        assert departed.take(session.id, session.resume_token) is not None
    assert (len(departed), departed.bytes) == (0, 0)


def test_a_copy_larger_than_the_bound_is_not_kept_and_evicts_nothing() -> None:
    small = written("small", n=1).session
    large = written("large", n=3).session
    small_size = copy_of(small).size  # type: ignore[union-attr]
    large_size = copy_of(large).size  # type: ignore[union-attr]
    assert small_size < large_size
    departed = copies(max_bytes=large_size - 1)
    assert departed.keep(small)
    assert not departed.keep(large)
    assert (len(departed), departed.bytes) == (1, small_size)
    assert departed.take(small.id, small.resume_token) is not None


def test_drop_forgets_a_copy_and_its_bytes() -> None:
    departed = copies()
    one, two = written("one").session, written("two").session
    assert departed.keep(one) and departed.keep(two)
    departed.drop(one.id)
    departed.drop("never kept")
    assert len(departed) == 1
    assert departed.bytes == copy_of(two).size  # type: ignore[union-attr]
    assert departed.take(one.id, one.resume_token) is None
    departed.drop(two.id)
    assert (len(departed), departed.bytes) == (0, 0)


def test_keeping_a_session_again_replaces_its_copy() -> None:
    departed = copies()
    driver = written()
    assert departed.keep(driver.session)
    driver.do(("user", "later"))
    driver.session.stored = None  # a whole write, to a store of its own
    save(driver, Applier())
    assert departed.keep(driver.session)
    assert len(departed) == 1
    assert departed.bytes == copy_of(driver.session).size  # type: ignore[union-attr]
    copy = departed.take(driver.session.id, driver.session.resume_token)
    assert copy is not None and copy.turns[-1] == UserTurn("later")


# Only lists as stored -------------------------------------------------------------------------


@pytest.mark.parametrize("name", LISTS)
def test_a_session_whose_list_changed_since_its_write_is_not_kept(name: str) -> None:
    departed = copies()
    driver = written()
    assert departed.keep(driver.session)
    for op in GROW[name]:
        driver.do(op)
    assert stored_lists(driver.session) is None and copy_of(driver.session) is None
    assert not departed.keep(driver.session)
    # The copy kept before went too: the session has moved on from it.
    assert (len(departed), departed.bytes) == (0, 0)


def test_a_session_never_written_is_not_kept() -> None:
    driver = Driver()
    driver.do(("user", "hello"))
    assert driver.session.stored is None
    assert copy_of(driver.session) is None
    departed = copies()
    assert not departed.keep(driver.session)
    assert (len(departed), departed.bytes) == (0, 0)
    # Nor a rewrite pending (`stored` cleared for a whole write), though nothing changed.
    driver = written()
    driver.session.stored = None
    assert not departed.keep(driver.session)


@pytest.mark.parametrize(
    "ops",
    [
        [("submit", "go")],
        [("call", "q")],
        [("ask", "q")],
        [("greet", ["alpha", "beta"])],
        [("submit", "go"), ("submit", "queued"), ("step", "partial text", True)],
    ],
    ids=["a run", "a pending call", "an open approval", "tools", "a step"],
)
def test_a_session_whose_head_alone_changed_is_kept(ops: list[tuple[Any, ...]]) -> None:
    driver = written()
    before = driver.session.dump()
    for op in ops:
        driver.do(op)
    assert driver.session.dump() != before
    departed = copies()
    assert departed.keep(driver.session)
    copy = departed.take(driver.session.id, driver.session.resume_token)
    assert copy is not None and driver.session.stored is not None
    assert dict(copy.held) == dict(driver.session.stored.lists)


# carry_on counts as from scratch ----------------------------------------------------------------

short = st.text(alphabet="abcé🧪", max_size=6)
calls = st.lists(
    st.tuples(st.sampled_from(["alpha", "be"]), short).map(
        lambda c: ToolCall(f"m_{c[0]}_{c[1]}", c[0], c[1])
    ),
    max_size=2,
).map(tuple)
turns = st.one_of(
    st.builds(UserTurn, short, st.just("r")),
    st.builds(AssistantTurn, short, calls, st.just("r")),
    st.builds(
        lambda status, text: make_result(ToolCall("m", "alpha", "{}"), status, detail=text),
        st.sampled_from([TerminalStatus.ERROR, TerminalStatus.DENIED]),
        short,
    ),
)


def counted(items: list[Turn]) -> Conversation:
    conversation = Conversation()
    conversation.turns = list(items)
    return conversation


@settings(max_examples=300, deadline=None)
@given(
    earlier=st.lists(turns, max_size=8),
    new=st.lists(turns, max_size=5),
    data=st.data(),
)
def test_carry_on_counts_as_a_conversation_counted_from_scratch(
    earlier: list[Turn], new: list[Turn], data: st.DataObject
) -> None:
    dropped = data.draw(st.integers(0, len(earlier)), label="dropped")
    before = counted(earlier)
    carried = Conversation()
    carried.carry_on(tuple(earlier), before.chars, before.exchange_start, dropped, list(new))
    scratch = counted([*earlier[dropped:], *new])
    assert carried.turns == scratch.turns
    assert carried.chars == scratch.chars
    assert carried.exchange_start == scratch.exchange_start


def bounded() -> Conversation:
    return Conversation(max_turns=6, max_chars=40, max_result_chars=8)


@settings(max_examples=200, deadline=None)
@given(
    earlier=st.lists(turns, max_size=20),
    later=st.lists(turns, min_size=1, max_size=20),
    more=st.lists(turns, max_size=12),
)
def test_a_bounded_conversation_carried_on_trims_as_the_one_it_continues(
    earlier: list[Turn], later: list[Turn], more: list[Turn]
) -> None:
    """The copy's counts come from a conversation grown turn by turn (and trimmed at its
    bounds); the turns added since, and the oldest dropped since, come from one that went on
    elsewhere. Put together, it goes on exactly as that one does."""
    kept = bounded()
    for turn in earlier:
        kept.add(turn)
    went_on = bounded()
    went_on.turns = list(kept.turns)
    went_on.added = kept.added
    for turn in later:
        went_on.add(turn)
    new = went_on.added - kept.added
    fresh = went_on.turns[len(went_on.turns) - new :] if new else []
    dropped = len(kept.turns) + new - len(went_on.turns)
    if not (0 <= new <= len(went_on.turns) and 0 <= dropped <= len(kept.turns)):
        return  # more was added than the other kept: a whole read, no copy involved
    carried = bounded()
    carried.carry_on(tuple(kept.turns), kept.chars, kept.exchange_start, dropped, list(fresh))
    assert carried.turns == went_on.turns
    assert (carried.chars, carried.exchange_start) == (went_on.chars, went_on.exchange_start)
    for turn in more:
        carried.add(turn)
        went_on.add(turn)
        assert carried.turns == went_on.turns
        assert (carried.chars, carried.exchange_start) == (went_on.chars, went_on.exchange_start)


def test_carry_on_cases_by_hand() -> None:
    u = [UserTurn(f"u{i}", "r") for i in range(3)]
    a = AssistantTurn("answer", (ToolCall("m1", "alpha", '{"q":1}'),), "r")
    earlier: list[Turn] = [u[0], a, u[1], a]
    before = counted(earlier)
    assert (before.chars, before.exchange_start) == (2 + 2 * (6 + 5 + 7) + 2, 2)
    # Nothing new, the first exchange dropped: the exchange in progress moves up by two.
    carried = Conversation()
    carried.carry_on(earlier, before.chars, before.exchange_start, 2, [])
    assert (carried.turns, carried.chars, carried.exchange_start) == ([u[1], a], 2 + 18, 0)
    # A user turn among the new ones starts the exchange in progress.
    carried.carry_on(earlier, before.chars, before.exchange_start, 1, [a, u[2], a])
    assert carried.exchange_start == 4 and carried.chars == 4 * 18 + 2 * 2
    # No user turn left at all: nothing to keep from the start.
    carried.carry_on((a, a), 36, 0, 1, [a])
    assert (carried.chars, carried.exchange_start) == (36, 0)
