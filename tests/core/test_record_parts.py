"""The record in parts (bridge/record.py): a store that applies each `Session.changes()` holds
exactly `Session.dump()`, whatever the session went through, and a store that does not hold
what the changes were computed from is caught by `Tail.expect` before anything is written.

The store here is a few Python lists changed as the `_SAVE` script of bridge/redis_store.py
changes Redis (tests/store/test_record_in_redis.py runs the same steps on a real Redis).
No event loop, no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.approvals import ApprovalTable
from bridge.calls import CallTable, TerminalStatus
from bridge.conversation import AssistantTurn, ToolCall, UserTurn, make_result
from bridge.errors import ProtocolError
from bridge.limits import SessionLimits
from bridge.protocol import (
    RunStartedMessage,
    StepRetryMessage,
    ToolCancelMessage,
    ToolRequestMessage,
)
from bridge.record import LISTS, Changes, Tail, join, split, to_json
from bridge.session import Session

# Bounds small enough that a few dozen steps pass every one of them, so trimming at the front
# (and the resets when more was added than is kept) happens in most examples.
LIMITS = SessionLimits(
    max_queued_messages=3,
    max_conversation_turns=6,
    max_conversation_chars=80,
    max_result_chars=8,
    replay_max_messages=5,
    replay_max_bytes=600,
)
REMEMBER = 4


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Applier:
    """What a store holds of one session, changed exactly as `_SAVE` changes Redis (the lease
    aside): every list is checked against `Tail.expect` before anything is written, a whole
    write replaces the record hash, and each list is reset or trimmed at the front, then
    appended to."""

    def __init__(self) -> None:
        self.head: str | None = None
        self.tools: str | None = None
        self.lists: dict[str, list[str]] = {name: [] for name in LISTS}

    def apply(self, changes: Changes) -> str:
        # A list the changes leave out is sent to the script as "not reset, drop 0, expect 0".
        tails = {name: changes.tails.get(name, Tail([])) for name in LISTS}
        if not changes.whole:
            for name, part in tails.items():
                if not part.reset and len(self.lists[name]) != part.expect:
                    return "lost"
        if changes.whole:
            self.tools = None
        self.head = changes.head
        if changes.tools is not None:
            self.tools = changes.tools
        for name, part in tails.items():
            stored = self.lists[name]
            if part.reset:
                stored.clear()
            else:
                # The script would trim nothing for a negative drop and everything for one past
                # the end: either would leave a record that joins wrong, so it is refused here.
                assert 0 <= part.drop <= len(stored), (name, part.drop, len(stored))
                del stored[: part.drop]
            stored.extend(part.items)
        return "saved"

    def record(self) -> dict[str, Any]:
        assert self.head is not None
        return join(self.head, self.tools, self.lists)

    def state(self) -> tuple[str | None, str | None, dict[str, list[str]]]:
        return self.head, self.tools, {name: list(items) for name, items in self.lists.items()}


def joined(changes: Changes) -> dict[str, Any]:
    return join(changes.head, changes.tools, {n: t.items for n, t in changes.tails.items()})


def write_bytes(changes: Changes) -> int:
    """What a write sends beyond its fixed arguments: the head, the tools, the list items."""
    texts = [changes.head, changes.tools or ""]
    texts += [item for part in changes.tails.values() for item in part.items]
    return sum(len(text.encode("utf-8", "surrogatepass")) for text in texts)


# Steps ----------------------------------------------------------------------------------------

# Lone surrogates included: a user's text is kept as it came, and a store must give it back.
texts = st.text(
    alphabet=st.characters() | st.sampled_from(["\ud800", "\udfff", "é", "🧪"]), max_size=10
)
tool_names = st.sampled_from(["alpha", "beta", "gamma", "delta"])
picks = st.integers(0, 7)

ops = st.one_of(
    st.tuples(st.just("greet"), st.lists(tool_names, unique=True, max_size=3)),
    st.tuples(st.just("register"), st.lists(tool_names, unique=True, max_size=2)),
    st.tuples(st.just("unregister"), st.lists(tool_names, max_size=2)),
    st.tuples(st.just("user"), texts),
    st.tuples(st.just("assistant"), texts, st.integers(0, 2)),
    st.tuples(st.just("result"), st.sampled_from(list(TerminalStatus)), texts, st.booleans()),
    st.tuples(st.just("push"), st.integers(0, 3), texts),
    st.tuples(st.just("token"), st.booleans(), texts),
    st.tuples(st.just("attach"), st.integers(0, 6)),
    st.tuples(st.just("take"), st.integers(1, 4)),
    st.tuples(st.just("detach")),
    st.tuples(st.just("busy")),
    st.tuples(st.just("call"), texts),
    st.tuples(st.just("answer"), picks, st.booleans()),
    st.tuples(st.just("cancel"), picks),
    st.tuples(st.just("progress"), picks, texts),
    st.tuples(st.just("expire")),
    st.tuples(st.just("ask"), texts),
    st.tuples(st.just("decide"), picks),
    st.tuples(st.just("submit"), texts),
    st.tuples(st.just("step"), texts, st.booleans()),
    st.tuples(st.just("finish")),
)
# After a step: nothing, a write of the changes, a whole rewrite (`stored = None`), or a write
# and then the session taken over from what the store holds (as another worker would).
# A take-over is rare: a loaded session remembers the default 1024 finished calls and
# decisions, so those lists would no longer be trimmed for the rest of the example.
afters = st.integers(0, 39).map(
    lambda n: None if n < 20 else "save" if n < 36 else "rewrite" if n < 39 else "reload"
)
steps = st.lists(st.tuples(ops, afters), min_size=40, max_size=120)


class Driver:
    """A real session moved by the steps above; every part of its record changes."""

    def __init__(self, limits: SessionLimits = LIMITS, remember: int = REMEMBER) -> None:
        self.clock = Clock()
        self.limits = limits
        session = Session("s-parts", clock=self.clock, limits=limits)
        # Small memories of finished calls and decisions, so those lists are trimmed too.
        session.calls = CallTable(
            self.clock, progress_cap_s=limits.progress_cap_ms / 1000, remember=remember
        )
        session.approvals = ApprovalTable(self.clock, remember=remember)
        self.session = session
        self.models = 0

    def take_over(self, record: dict[str, Any]) -> None:
        self.session = Session.load(record, clock=self.clock, limits=self.limits)
        self.session.stored = self.session.mark()

    def _model_id(self) -> str:
        self.models += 1
        return f"model_{self.models}"

    def do(self, op: Sequence[Any]) -> None:
        session, log = self.session, self.session.outbound
        name, args = op[0], op[1:]
        run_id = session.run_id or ""
        if name == "greet":
            session.greet([_tool(n) for n in args[0]])
        elif name == "register":
            session.register([_tool(n) for n in args[0]])
        elif name == "unregister":
            session.unregister(args[0])
        elif name == "user":
            session.conversation.add(UserTurn(args[0], run_id))
        elif name == "assistant":
            calls = tuple(
                ToolCall(self._model_id(), "alpha", json.dumps({"q": args[0]}), f"call_w{n}")
                for n in range(args[1])
            )
            session.conversation.add(AssistantTurn(args[0], calls, run_id))
        elif name == "result":
            status, text, untrusted = args
            call = ToolCall(self._model_id(), "alpha", "{}")
            session.conversation.add(
                make_result(call, status, data={"text": text}, detail=text, untrusted=untrusted)
            )
        elif name == "push":
            kind, text = args
            if kind == 0:
                log.push(RunStartedMessage(run_id=run_id, content=text))
            elif kind == 1:
                log.push(ToolCancelMessage(id="call_x", reason=text))
            elif kind == 2:
                log.push(
                    ToolRequestMessage(
                        id="call_y", run_id=run_id, name="alpha", arguments={"q": text},
                        timeout_ms=1000,
                    )
                )  # fmt: skip
            else:
                log.push(StepRetryMessage(run_id=run_id, step=1, attempt=1, reason=text))
        elif name == "token":
            log.push_token(run_id if args[0] else "run_other", args[1])
        elif name == "attach":
            after = log.last_seq - args[0]
            log.attach(after if args[0] and log.covers(after) else None)
        elif name == "take":
            for _ in range(args[0]):
                log.take()
        elif name == "detach":
            log.detach()
        elif name == "busy":
            log.reader_busy = not log.reader_busy
        elif name == "call":
            call_id = session.calls.new_id()
            opened = session.calls.open(
                call_id, name="alpha", run_id=run_id, timeout_s=30.0, arguments={"q": args[0]}
            )
            opened.request_seq = log.last_seq
        elif name in ("answer", "cancel", "progress"):
            pending = session.calls.pending()
            if not pending:
                return
            call_id = pending[args[0] % len(pending)].id
            if name == "answer":
                session.calls.answer(call_id)
                if args[1]:
                    session.calls.keep_answer(call_id, "ok", {"n": 1}, None)
            elif name == "cancel":
                session.calls.cancel(call_id)
            else:
                session.calls.progress(call_id, args[1])
        elif name == "expire":
            self.clock.now += 31
            session.calls.expire()
        elif name == "ask":
            asked = session.approvals.open(
                session.calls.new_id(), run_id=run_id, name="alpha", arguments={"q": args[0]},
                reason=args[0], timeout_s=60.0,
            )  # fmt: skip
            asked.request_seq = log.last_seq
        elif name == "decide":
            waiting = session.approvals.pending()
            if waiting:
                session.approvals.close(waiting[args[0] % len(waiting)].id)
        elif name == "submit":
            try:
                session.submit(args[0])
            except ProtocolError:
                pass  # the queue is full: the session refuses, and nothing changes
        elif name == "step":
            run = session.run
            if run is None:
                return
            run.steps += 1
            run.partial.append(args[0])
            run.tainted = run.tainted or args[1]
            run.spend_call(64)
            run.record_outcome("alpha", failed=args[1])
            call = ToolCall(self._model_id(), "alpha", "{}")
            run.results[call.id] = make_result(call, TerminalStatus.OK, data=args[0])
            run.started.add(call.id)
        elif name == "finish":
            session.calls.settle()
            session.finish_run()
        else:
            raise AssertionError(f"unknown step {name!r}")


def _tool(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"the {name} tool",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    }


def save(driver: Driver, store: Applier) -> Changes:
    """One write as a store's caller makes it: the changes since the mark, applied, then the
    new mark remembered; the store then holds exactly the session's record."""
    session = driver.session
    changes = session.changes()
    for name, part in changes.tails.items():
        if not part.reset:
            assert part.expect == len(store.lists[name]), name
    assert store.apply(changes) == "saved"
    session.stored = changes.mark
    record = session.dump()
    assert store.record() == record
    assert session.mark() == replace(changes.mark, head="")  # a mark of its own knows no head
    # The head is the small part: none of the lists, and the tools only beside it.
    head = json.loads(changes.head)
    assert "conversation" not in head and "tools" not in head
    assert "frames" not in head["outbound"] and "finished" not in head["calls"]
    assert "decided" not in head["approvals"]
    return changes


def run_steps(driver: Driver, store: Applier, plan: list[tuple[Any, str | None]]) -> None:
    for op, after in plan:
        driver.do(op)
        if after == "rewrite":
            driver.session.stored = None
        if after is not None:
            changes = save(driver, store)
            assert changes.whole or after != "rewrite"
        if after == "reload":
            driver.take_over(store.record())
            assert driver.session.dump() == store.record()


# Changes applied in order -----------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_applied_changes_hold_exactly_the_dump(plan: list[tuple[Any, str | None]]) -> None:
    driver, store = Driver(), Applier()
    save(driver, store)
    run_steps(driver, store, plan)
    save(driver, store)
    # A whole record split and joined is the record, and replaces whatever a store had.
    record = driver.session.dump()
    assert joined(split(record)) == record
    assert store.apply(split(record)) == "saved" and store.record() == record
    fresh = Applier()
    assert fresh.apply(split(record)) == "saved" and fresh.record() == record


def test_a_first_write_and_a_rewrite_are_whole_and_later_ones_are_not() -> None:
    driver, store = Driver(), Applier()
    driver.session.greet([_tool("alpha")])
    first = save(driver, store)
    assert first.whole and first.tools is not None
    driver.do(("user", "hello"))
    # Into an empty list, everything added is everything kept: that is a reset, not a whole.
    later = save(driver, store)
    assert not later.whole and later.tools is None
    assert later.tails["turns"] == Tail([to_json(_user("hello"))], reset=True)
    driver.do(("user", "again"))
    assert save(driver, store).tails["turns"] == Tail([to_json(_user("again"))], expect=1)
    driver.session.stored = None
    assert save(driver, store).whole


def _user(text: str) -> dict[str, Any]:
    return {"kind": "user", "content": text, "run_id": ""}


def test_a_write_carries_only_what_is_new_once_the_bounds_are_passed() -> None:
    driver, store = Driver(), Applier()
    save(driver, store)
    sizes = []
    for n in range(200):
        driver.do(("user", f"message {n % 10}"))
        driver.do(("push", 0, "x"))
        driver.do(("call", "q"))
        driver.do(("answer", 0, False))
        driver.do(("ask", "q"))
        driver.do(("decide", 0))
        changes = save(driver, store)
        sizes.append(write_bytes(changes))
        if n >= 20:
            # Past every bound, each list drops from its front as much as it appends.
            assert all(not part.reset for part in changes.tails.values())
            assert all(len(part.items) == 1 for part in changes.tails.values())
    assert max(sizes[20:]) <= 1.2 * sizes[20]


# The stored length --------------------------------------------------------------------------

# One step that adds one item to the named list.
GROW: dict[str, list[tuple[Any, ...]]] = {
    "turns": [("user", "again")],
    "frames": [("push", 0, "again")],
    "finished": [("call", "q"), ("answer", 0, False)],
    "decided": [("ask", "q"), ("decide", 0)],
}


def _grown(name: str) -> tuple[Driver, Applier]:
    driver, store = Driver(), Applier()
    for _ in range(2):
        for op in GROW[name]:
            driver.do(op)
    save(driver, store)
    for op in GROW[name]:
        driver.do(op)
    return driver, store


@pytest.mark.parametrize("name", LISTS)
def test_expect_is_the_stored_length(name: str) -> None:
    driver, store = _grown(name)
    changes = driver.session.changes()
    part = changes.tails[name]
    assert not part.reset and not changes.whole
    assert part.expect == len(store.lists[name]) == 2
    assert len(part.items) == 1


@pytest.mark.parametrize("name", LISTS)
@pytest.mark.parametrize("off_by", [-1, 1])
def test_a_list_of_another_length_is_caught_before_anything_is_written(
    name: str, off_by: int
) -> None:
    driver, store = _grown(name)
    if off_by > 0:
        store.lists[name].append(store.lists[name][-1])
    else:
        store.lists[name].pop()
    before = store.state()
    changes = driver.session.changes()
    assert store.apply(changes) == "lost"
    assert store.state() == before
    # Only a whole write may go ahead, and it puts the record right.
    driver.session.stored = None
    save(driver, store)


@pytest.mark.parametrize("name", LISTS)
def test_a_stale_mark_repeats_an_append_and_is_caught(name: str) -> None:
    driver, store = _grown(name)
    first = driver.session.changes()
    assert store.apply(first) == "saved"
    # The caller did not remember the mark (the write's answer was lost, say): the next
    # changes would append again what the store has.
    for op in GROW[name]:
        driver.do(op)
    before = store.state()
    again = driver.session.changes()
    assert again.tails[name].expect == 2 != len(store.lists[name])
    assert store.apply(again) == "lost" and store.state() == before
    driver.session.stored = None
    save(driver, store)


def test_a_session_taken_over_writes_on_from_what_the_store_holds() -> None:
    driver, store = Driver(), Applier()
    for n in range(12):
        for op in (("user", f"u{n}"), ("push", 0, "p"), ("call", "q"), ("answer", 0, True)):
            driver.do(op)
    driver.do(("greet", ["alpha", "beta"]))
    save(driver, store)
    driver.take_over(store.record())
    # The loaded session counts on from the stored counts of turns, finished calls and decided
    # approvals ever added: a worker holding an earlier copy reads only what came since.
    session = driver.session
    assert session.conversation.added == 12
    assert (session.calls.finished_added, session.approvals.decided_added) == (12, 0)
    for n in range(12):
        driver.do(("user", f"v{n}"))
        driver.do(("ask", "q"))
        driver.do(("decide", 0))
        changes = save(driver, store)
        assert changes.tools is None and not changes.whole


# split and join of any record -------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
# Keys of the parts are set below, each on its own: a random key of that name would only be
# overwritten. The head's own names ("~split", an outbound "first") are fair game.
RESERVED = {"tools", "conversation", "outbound", "calls", "approvals"}
RESERVED |= {"frames", "finished", "decided"}
plain_keys = texts.filter(lambda key: key not in RESERVED)


@st.composite
def odd_records(draw: st.DrawFn) -> dict[str, Any]:
    """Records of any shape: each part present, absent, or not what a session writes."""
    record: dict[str, Any] = draw(st.dictionaries(plain_keys, json_values, max_size=3))
    if draw(st.booleans()):
        record["tools"] = draw(st.lists(json_values, max_size=2) | json_scalars)
    if draw(st.booleans()):
        record["conversation"] = draw(st.lists(json_values, max_size=4) | json_scalars)
    if draw(st.booleans()):
        outbound = draw(st.dictionaries(plain_keys, json_values, max_size=2))
        shape = draw(st.sampled_from(["consecutive", "gap", "loose", "absent"]))
        first = draw(st.integers(-5, 2**40))
        frames = draw(st.lists(texts, max_size=4))
        if shape == "consecutive":
            outbound["frames"] = [[first + i, f] for i, f in enumerate(frames)]
        elif shape == "gap":
            outbound["frames"] = [[first + 2 * i, f] for i, f in enumerate(frames)]
        elif shape == "loose":
            # Not pairs, or pairs whose seq is no integer: kept in the head as they are.
            outbound["frames"] = draw(
                st.lists(json_scalars, max_size=3)
                | st.lists(st.tuples(json_scalars, texts).map(list), max_size=3)
            )
        record["outbound"] = outbound
    for parent, key in (("calls", "finished"), ("approvals", "decided")):
        if draw(st.booleans()):
            holder = draw(st.dictionaries(plain_keys, json_values, max_size=2))
            if draw(st.booleans()):
                holder[key] = draw(st.lists(texts, max_size=3) | st.lists(json_values, max_size=3))
            record[parent] = holder if draw(st.booleans()) else draw(json_scalars)
    return record


@settings(max_examples=300, deadline=None)
@given(odd_records())
def test_split_and_join_round_trip_any_record(record: dict[str, Any]) -> None:
    changes = split(record)
    assert changes.mark is None
    assert joined(changes) == record
    store = Applier()
    assert store.apply(changes) == "saved"
    assert store.record() == record


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"v": 1},
        {"~split": 1},
        {"~split": None, "tools": [1], "conversation": [{"a": 1}]},
        {"tools": None},
        {"outbound": {"first": 5, "frames": [[1, "a"]]}},
        {"outbound": {"frames": [["x", "a"]]}},
        {"outbound": {"frames": [[None, "a"], [True, "b"]]}},
        {"tools": []},
        {"conversation": []},
        {"conversation": "not a list"},
        {"outbound": {"seq": 0, "frames": []}},
        {"outbound": {"seq": 9, "frames": [[3, "a"], [5, "b"]]}},
        {"outbound": "not a dict", "calls": None, "approvals": []},
        {"calls": {"finished": [["c1", "answered"]]}, "approvals": {"decided": ["c2"]}},
        {"approvals": {"decided": ["c1", 2]}},
        {"conversation": ["\ud800", {"\udfff": "x"}], "tools": ["lone \ud800"]},
        {"outbound": {"frames": [[1, "frame \ud800 text"], [2, ""]]}},
        {"": {"": [[], {}]}, "nul": "\x00"},
    ],
)
def test_split_and_join_round_trip_odd_records(record: dict[str, Any]) -> None:
    assert joined(split(record)) == record
