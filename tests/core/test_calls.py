"""The pending-call table on a fake clock: deadlines, progress, late and duplicate answers."""

from __future__ import annotations

import pytest

from bridge.calls import CallState, CallTable, Delivery


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def table(cap_s: float = 10.0) -> tuple[CallTable, FakeClock]:
    clock = FakeClock()
    return CallTable(clock, progress_cap_s=cap_s, id_prefix="t"), clock


def test_ids_are_unique() -> None:
    calls = CallTable(FakeClock(), progress_cap_s=1)
    ids = {calls.new_id() for _ in range(10_000)}
    assert len(ids) == 10_000


def test_deadline_is_armed_when_opened() -> None:
    calls, clock = table()
    calls.open("c1", name="t", run_id="r", timeout_s=2)
    clock.now += 1.999
    assert calls.expire() == []
    clock.now += 0.001
    expired = calls.expire()
    assert [c.id for c in expired] == ["c1"] and expired[0].state is CallState.TIMED_OUT
    assert len(calls) == 0


def test_answer_once_then_duplicate() -> None:
    calls, _ = table()
    calls.open("c1", name="t", run_id="r", timeout_s=2)
    delivery, call = calls.answer("c1")
    assert delivery is Delivery.ACCEPTED and call is not None and call.state is CallState.ANSWERED
    assert calls.answer("c1") == (Delivery.DUPLICATE, None)


def test_late_answer_after_timeout_or_cancel_is_late_not_unknown() -> None:
    calls, clock = table()
    calls.open("c1", name="t", run_id="r", timeout_s=1)
    calls.open("c2", name="t", run_id="r", timeout_s=5)
    clock.now += 1
    calls.expire()
    calls.cancel("c2")
    assert calls.answer("c1")[0] is Delivery.LATE
    assert calls.answer("c2")[0] is Delivery.LATE
    assert calls.answer("never")[0] is Delivery.UNKNOWN


def test_progress_extends_the_deadline_up_to_the_hard_cap() -> None:
    calls, clock = table(cap_s=5)
    calls.open("c1", name="t", run_id="r", timeout_s=2)
    for _ in range(3):
        clock.now += 1.5
        assert calls.progress("c1", "still working") is Delivery.ACCEPTED
        assert calls.expire() == []
    # 4.5 s in, progress would push to 6.5 s, but the cap is 5 s from the send.
    assert calls.remaining("c1") == 0.5
    clock.now += 0.5
    assert [c.id for c in calls.expire()] == ["c1"]


def test_progress_for_unknown_and_finished_calls() -> None:
    calls, _ = table()
    assert calls.progress("nope") is Delivery.UNKNOWN
    calls.open("c1", name="t", run_id="r", timeout_s=1)
    calls.answer("c1")
    assert calls.progress("c1") is Delivery.DUPLICATE


def test_cancel_run_only_touches_that_run() -> None:
    calls, _ = table()
    calls.open("a", name="t", run_id="r1", timeout_s=1)
    calls.open("b", name="t", run_id="r2", timeout_s=1)
    assert [c.id for c in calls.cancel_run("r1")] == ["a"]
    assert [c.id for c in calls.pending()] == ["b"]


def test_next_deadline_is_the_earliest() -> None:
    calls, _ = table()
    assert calls.next_deadline() is None
    calls.open("a", name="t", run_id="r", timeout_s=3)
    calls.open("b", name="t", run_id="r", timeout_s=1)
    assert calls.next_deadline() == 101.0


def test_finished_ids_are_remembered_within_a_bound() -> None:
    clock = FakeClock()
    calls = CallTable(clock, progress_cap_s=1, remember=2)
    for call_id in ("a", "b", "c"):
        calls.open(call_id, name="t", run_id="r", timeout_s=1)
        calls.answer(call_id)
    assert calls.classify("a") is Delivery.UNKNOWN
    assert calls.classify("c") is Delivery.DUPLICATE


def test_reusing_an_id_is_refused() -> None:
    calls, _ = table()
    calls.open("a", name="t", run_id="r", timeout_s=1)
    with pytest.raises(ValueError):
        calls.open("a", name="t", run_id="r", timeout_s=1)
