"""The pending-call table: ids, deadlines on an injected clock, and terminal states.

No I/O and no event loop: the edge asks `next_deadline()` when to wake and calls `expire()`.
Two clocks exist because a person answering a dialog is not a stalled machine: interactive
calls get the human timeout, and `tool_progress` pushes the machine deadline out, never past a
hard cap counted from when the request was sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "CallState",
    "CallTable",
    "Delivery",
    "PendingCall",
    "TerminalStatus",
    "terminal_for_response",
]


class TerminalStatus(StrEnum):
    OK = "ok"
    ERROR = "error"
    INVALID_ARGUMENTS = "invalid_arguments"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    # The client cannot tell whether the tool took effect (its page reloaded mid-call).
    OUTCOME_UNKNOWN = "outcome_unknown"
    # Nobody answered the approval request in time: not a refusal.
    APPROVAL_EXPIRED = "approval_expired"


class CallState(StrEnum):
    PENDING = "pending"
    ANSWERED = "answered"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class Delivery(StrEnum):
    """What to do with an incoming `tool_response` or `tool_progress`."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # answered already: reply `error duplicate_response`
    LATE = "late"  # timed out or cancelled already: drop and log
    UNKNOWN = "unknown"  # never issued (or long forgotten): reply `error unknown_call`


@dataclass(slots=True)
class PendingCall:
    id: str
    run_id: str
    name: str
    sent_at: float
    timeout_s: float
    deadline: float
    hard_deadline: float
    interactive: bool
    # Kept so the request can be sent again, identical, to a client that resumes.
    arguments: dict[str, Any] = field(default_factory=dict)
    request_seq: int = 0
    state: CallState = CallState.PENDING
    last_progress: float | None = None
    progress_message: str | None = None

    @property
    def timeout_ms(self) -> int:
        return round(self.timeout_s * 1000)


Clock = Callable[[], float]


class CallTable:
    """Tracks every client tool call of one session from request to terminal state.

    The clock is injected; the server gives it the wall clock, so deadlines stay meaningful in
    a stored record read back by another process.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        progress_cap_s: float,
        id_prefix: str | None = None,
        remember: int = 1024,
    ) -> None:
        self._clock = clock
        self._progress_cap_s = progress_cap_s
        self._prefix = id_prefix or secrets.token_hex(4)
        self._counter = 0
        self._pending: dict[str, PendingCall] = {}
        # Finished ids are remembered (bounded) to tell a duplicate or late answer from a stray one.
        # A dict keeps insertion order: the first key is the oldest. Built from pairs in half
        # the time an OrderedDict takes (a session taken over brings up to a thousand).
        self._finished: dict[str, CallState] = {}
        self._remember = remember
        # Finished ids ever remembered (the oldest are forgotten): what a store appends from.
        self.finished_added = 0
        # Answers accepted but not yet part of the run's results, as [status, result, error]:
        # kept in the record, so an answer the client was told nothing about yet survives the
        # session moving to another worker before the run took it in.
        self._answers: dict[str, list[Any]] = {}

    def new_id(self) -> str:
        self._counter += 1
        return f"call_{self._prefix}_{self._counter}"

    def open(
        self,
        call_id: str,
        *,
        name: str,
        run_id: str,
        timeout_s: float,
        interactive: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> PendingCall:
        """Arm a call at the moment its request is queued for the client."""
        if call_id in self._pending or call_id in self._finished:
            raise ValueError(f"call id {call_id!r} is already in use")
        now = self._clock()
        cap = max(self._progress_cap_s, timeout_s)
        call = PendingCall(
            id=call_id,
            run_id=run_id,
            name=name,
            sent_at=now,
            timeout_s=timeout_s,
            deadline=now + timeout_s,
            hard_deadline=now + cap,
            interactive=interactive,
            arguments=dict(arguments or {}),
        )
        self._pending[call_id] = call
        return call

    def get(self, call_id: str) -> PendingCall | None:
        return self._pending.get(call_id)

    def pending(self) -> list[PendingCall]:
        return list(self._pending.values())

    def __len__(self) -> int:
        return len(self._pending)

    def not_seen_after(self, after_seq: int | None) -> list[PendingCall]:
        """Pending calls whose request a client resuming after `after_seq` will not be replayed
        (all of them when it gets a snapshot instead, `after_seq` None)."""
        return [
            c for c in self._pending.values() if after_seq is None or c.request_seq <= after_seq
        ]

    def classify(self, call_id: str) -> Delivery:
        if call_id in self._pending:
            return Delivery.ACCEPTED
        state = self._finished.get(call_id)
        if state is None:
            return Delivery.UNKNOWN
        return Delivery.DUPLICATE if state is CallState.ANSWERED else Delivery.LATE

    def answer(self, call_id: str) -> tuple[Delivery, PendingCall | None]:
        """Record a `tool_response`; only the first answer to a pending call counts."""
        delivery = self.classify(call_id)
        if delivery is not Delivery.ACCEPTED:
            return delivery, None
        return delivery, self._finish(call_id, CallState.ANSWERED)

    def progress(self, call_id: str, message: str | None = None) -> Delivery:
        """Push the deadline out by the call's timeout, never past the hard cap."""
        delivery = self.classify(call_id)
        call = self._pending.get(call_id)
        if call is None:
            return delivery
        now = self._clock()
        call.last_progress = now
        call.progress_message = message
        call.deadline = min(max(call.deadline, now + call.timeout_s), call.hard_deadline)
        return delivery

    def expire(self) -> list[PendingCall]:
        """Mark every call whose deadline has passed as timed out and return them."""
        now = self._clock()
        due = [c.id for c in self._pending.values() if c.deadline <= now]
        return [self._finish(call_id, CallState.TIMED_OUT) for call_id in due]

    def cancel(self, call_id: str) -> PendingCall | None:
        if call_id not in self._pending:
            return None
        return self._finish(call_id, CallState.CANCELLED)

    def cancel_run(self, run_id: str) -> list[PendingCall]:
        ids = [c.id for c in self._pending.values() if c.run_id == run_id]
        return [self._finish(call_id, CallState.CANCELLED) for call_id in ids]

    def cancel_all(self) -> list[PendingCall]:
        return [self._finish(call_id, CallState.CANCELLED) for call_id in list(self._pending)]

    def remaining(self, call_id: str) -> float | None:
        call = self._pending.get(call_id)
        return None if call is None else max(0.0, call.deadline - self._clock())

    def next_deadline(self) -> float | None:
        return min((c.deadline for c in self._pending.values()), default=None)

    def _finish(self, call_id: str, state: CallState) -> PendingCall:
        call = self._pending.pop(call_id)
        call.state = state
        if call_id not in self._finished:
            self.finished_added += 1
        self._finished[call_id] = state
        while len(self._finished) > self._remember:
            del self._finished[next(iter(self._finished))]
        return call

    # Record ---------------------------------------------------------------------------------

    def finished(self) -> Collection[tuple[str, CallState]]:
        """Remembered finished calls, oldest first."""
        return self._finished.items()

    def keep_answer(self, call_id: str, status: str, result: Any, error: str | None) -> None:
        self._answers[call_id] = [status, result, error]

    def answer_of(self, call_id: str) -> list[Any] | None:
        """The accepted answer [status, result, error] the run has not taken in yet."""
        return self._answers.get(call_id)

    def settle(self, call_id: str | None = None) -> None:
        """The run holds the call's result now (None: the run ended, whatever it held)."""
        if call_id is None:
            self._answers.clear()
        else:
            self._answers.pop(call_id, None)

    def dump(self, *, with_finished: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "prefix": self._prefix,
            "counter": self._counter,
            "pending": [asdict(call) for call in self._pending.values()],
            "answers": dict(self._answers),
        }
        if with_finished:
            data["finished"] = [[call_id, state.value] for call_id, state in self._finished.items()]
        return data

    @classmethod
    def load(cls, data: Mapping[str, Any], clock: Clock, *, progress_cap_s: float) -> CallTable:
        table = cls(clock, progress_cap_s=progress_cap_s, id_prefix=data["prefix"])
        table._counter = data["counter"]
        for item in data["pending"]:
            call = PendingCall(**{**item, "state": CallState(item["state"])})
            table._pending[call.id] = call
        states = _STATES
        for call_id, state in data["finished"]:
            table._finished[call_id] = states[state]
        table._answers = dict(data.get("answers", {}))
        return table

    def restore_finished(self, finished: Iterable[tuple[str, CallState]]) -> None:
        """The finished calls, oldest first, of a session put together from an earlier copy."""
        self._finished = dict(finished)


# States by their value: a dict lookup costs a fraction of an enum call, and a session loaded
# by another worker brings up to a thousand finished calls.
_STATES = {state.value: state for state in CallState}


_RESPONSE_STATUS = {
    "ok": TerminalStatus.OK,
    "denied": TerminalStatus.DENIED,
    "outcome_unknown": TerminalStatus.OUTCOME_UNKNOWN,
}


def terminal_for_response(status: str) -> TerminalStatus:
    """Map a client's `tool_response.status` to the terminal status of the call."""
    return _RESPONSE_STATUS.get(status, TerminalStatus.ERROR)
