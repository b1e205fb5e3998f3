"""Approvals as policy, with no I/O: who decides a call may run, and the table of open questions.

Between argument validation and dispatch every call gets a decision: `allow`, `deny` (with a
reason the model reads) or `ask` (a person decides). The default asks for tools hinted
`destructive`; `BRIDGE_APPROVAL` changes the mode; an app passes its own policy. A run that has
read untrusted content (a tool hinted `untrusted_content`) asks before every destructive call,
whatever the policy says.

Open questions live in `ApprovalTable`, keyed by the server's own call id, with a wall-clock
deadline, and are part of the session's record, so a person can answer after a reconnect or a
page reload. An answer to an id never asked, or already decided, changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from bridge.session import Session
    from bridge.toolspec import ToolSpec

__all__ = [
    "ApprovalMode",
    "ApprovalPolicy",
    "ApprovalTable",
    "Decision",
    "PendingApproval",
    "Verdict",
    "mode_policy",
    "needs_person",
]

TAINT_REASON = "untrusted content in this run"


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    ASK = "ask"


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    reason: str = ""


ApprovalMode = Literal["destructive", "all", "none"]

# Given the tool, the validated arguments and the session: sync or async.
ApprovalPolicy = Callable[
    ["ToolSpec", Mapping[str, Any], "Session"], "Decision | Verdict | Awaitable[Decision | Verdict]"
]


def mode_policy(mode: ApprovalMode) -> ApprovalPolicy:
    """The built-in policies: ask for destructive tools, for every tool, or for none."""

    def decide(spec: ToolSpec, _arguments: Mapping[str, Any], _session: Session) -> Decision:
        if mode == "all" or (mode == "destructive" and spec.destructive):
            return Decision(Verdict.ASK, "this tool needs your approval")
        return Decision(Verdict.ALLOW)

    return decide


def needs_person(decision: Decision, spec: ToolSpec, tainted: bool) -> Decision:
    """The taint rule on top of any policy: after untrusted content, destructive calls ask."""
    if decision.verdict is Verdict.ALLOW and tainted and spec.destructive:
        return Decision(Verdict.ASK, TAINT_REASON)
    if decision.verdict is Verdict.ASK and tainted and spec.destructive:
        return Decision(Verdict.ASK, TAINT_REASON)
    return decision


@dataclass(slots=True)
class PendingApproval:
    id: str
    run_id: str
    name: str
    arguments: dict[str, Any]
    reason: str
    expires_at: float
    request_seq: int = 0

    @property
    def expires_at_ms(self) -> int:
        return int(self.expires_at * 1000)


class Answer(StrEnum):
    ACCEPTED = "accepted"
    UNKNOWN = "unknown"  # never asked, or decided already: `error unknown_approval`


class ApprovalTable:
    """Open approval requests of one session, and the tools approved for the whole session."""

    def __init__(self, clock: Callable[[], float], *, remember: int = 1024) -> None:
        self._clock = clock
        self._open: dict[str, PendingApproval] = {}
        self._decided: dict[str, None] = {}
        self._remember = remember
        # Decisions ever remembered (the oldest are forgotten): what a store appends from.
        self.decided_added = 0
        self.approved_tools: set[str] = set()

    def __len__(self) -> int:
        return len(self._open)

    def open(
        self,
        call_id: str,
        *,
        run_id: str,
        name: str,
        arguments: dict[str, Any],
        reason: str,
        timeout_s: float,
    ) -> PendingApproval:
        pending = PendingApproval(
            call_id, run_id, name, dict(arguments), reason, self._clock() + timeout_s
        )
        self._open[call_id] = pending
        return pending

    def get(self, call_id: str) -> PendingApproval | None:
        return self._open.get(call_id)

    def pending(self) -> list[PendingApproval]:
        return list(self._open.values())

    def not_seen_after(self, after_seq: int | None) -> list[PendingApproval]:
        return [a for a in self._open.values() if after_seq is None or a.request_seq <= after_seq]

    def restore_decided(self, decided: Iterable[str]) -> None:
        """The decided approvals, oldest first, of a session put together from an earlier copy."""
        self._decided = dict.fromkeys(decided)

    def close(self, call_id: str) -> PendingApproval | None:
        """The question is settled (answered, expired, cancelled): later answers are refused."""
        pending = self._open.pop(call_id, None)
        if pending is not None:
            if call_id not in self._decided:
                self.decided_added += 1
            self._decided[call_id] = None
            while len(self._decided) > self._remember:
                # Dicts keep insertion order: the first key is the oldest decision.
                del self._decided[next(iter(self._decided))]
        return pending

    def classify(self, call_id: str) -> Answer:
        return Answer.ACCEPTED if call_id in self._open else Answer.UNKNOWN

    def remaining(self, call_id: str) -> float | None:
        pending = self._open.get(call_id)
        return None if pending is None else max(0.0, pending.expires_at - self._clock())

    # Record ------------------------------------------------------------------------------------

    def decided(self) -> Collection[str]:
        """Call ids of remembered decisions, oldest first."""
        return self._decided.keys()

    def dump(self, *, with_decided: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "open": [asdict(a) for a in self._open.values()],
            "approved_tools": sorted(self.approved_tools),
        }
        if with_decided:
            data["decided"] = list(self._decided)
        return data

    @classmethod
    def load(cls, data: Mapping[str, Any], clock: Callable[[], float]) -> ApprovalTable:
        table = cls(clock)
        for item in data["open"]:
            pending = PendingApproval(**item)
            table._open[pending.id] = pending
        for call_id in data["decided"]:
            table._decided[call_id] = None
        table.approved_tools = set(data["approved_tools"])
        return table
