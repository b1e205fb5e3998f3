"""The approval gate between argument validation and dispatch: the asyncio side of approvals.

The decisions and the table are in `bridge.approvals`; this adds the waiting: a future per open
request, resolved by the person's `approval_response`, bounded by a timer on the human clock.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bridge.agent.outbox import Outbox
from bridge.approvals import (
    Answer,
    ApprovalPolicy,
    ApprovalTable,
    Decision,
    Verdict,
    needs_person,
)
from bridge.errors import ErrorCode
from bridge.protocol import ApprovalRequestMessage, ApprovalResponseMessage, ErrorMessage
from bridge.session import Run, Session
from bridge.toolspec import ToolSpec

__all__ = ["ApprovalGate", "GateOutcome", "Passage"]

log = logging.getLogger(__name__)


class Passage(StrEnum):
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class GateOutcome:
    passage: Passage
    arguments: dict[str, Any]
    reason: str = ""


class ApprovalGate:
    def __init__(
        self,
        session: Session,
        outbox: Outbox,
        policy: ApprovalPolicy,
        timeout_s: float,
        before_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._session = session
        self._table: ApprovalTable = session.approvals
        self._outbox = outbox
        self._policy = policy
        self._timeout_s = timeout_s
        self._futures: dict[str, asyncio.Future[GateOutcome]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._before_request = before_request
        # Set while the session is handed to another worker: open questions go with it.
        self.moving = False

    async def decide(
        self, run: Run, call_id: str, spec: ToolSpec, arguments: dict[str, Any]
    ) -> GateOutcome:
        decision = needs_person(await self._ask_policy(spec, arguments), spec, run.tainted)
        if decision.verdict is Verdict.ALLOW:
            return GateOutcome(Passage.APPROVED, arguments)
        if decision.verdict is Verdict.DENY:
            reason = decision.reason or "the server's policy does not allow this call"
            return GateOutcome(Passage.DENIED, arguments, reason)
        # A person said "always for this session"; untrusted content in the run still asks.
        if spec.name in self._table.approved_tools and not run.tainted:
            return GateOutcome(Passage.APPROVED, arguments)
        return await self._ask_person(run, call_id, spec, arguments, decision.reason)

    async def rejoin(self, call_id: str) -> GateOutcome:
        """Wait for the answer to a question asked before this worker took the session over."""
        return await self._wait(call_id, post=False)

    async def _ask_policy(self, spec: ToolSpec, arguments: dict[str, Any]) -> Decision:
        # An app's policy is the app's code: if it raises or answers something that is not a
        # verdict, the call must neither run unchecked nor take the whole run down with it
        # (the other calls of the step would be left waiting). It fails closed, as a denial
        # the model can read; the app's log says why.
        try:
            answer = self._policy(spec, arguments, self._session)
            if inspect.isawaitable(answer):
                answer = await answer
            return answer if isinstance(answer, Decision) else Decision(Verdict(answer))
        except Exception:
            log.exception("the approval policy failed for a call of %s", spec.name)
            return Decision(Verdict.DENY, "the server could not decide whether this call may run")

    async def _ask_person(
        self, run: Run, call_id: str, spec: ToolSpec, arguments: dict[str, Any], reason: str
    ) -> GateOutcome:
        self._table.open(
            call_id,
            run_id=run.id,
            name=spec.name,
            arguments=arguments,
            reason=reason or "this tool needs your approval",
            timeout_s=self._timeout_s,
        )
        return await self._wait(call_id, post=True)

    async def _wait(self, call_id: str, *, post: bool) -> GateOutcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GateOutcome] = loop.create_future()
        self._futures[call_id] = future
        self._arm(call_id)
        try:
            pending = self._table.get(call_id)
            if post and pending is not None:
                if self._before_request is not None:
                    await self._before_request()
                pending.request_seq = self._outbox.post(self._request(pending.id))
            return await future
        except asyncio.CancelledError:
            if not self.moving:
                self._table.close(call_id)
            raise
        finally:
            self._futures.pop(call_id, None)
            timer = self._timers.pop(call_id, None)
            if timer is not None:
                timer.cancel()

    def _request(self, call_id: str, redelivered: bool = False) -> ApprovalRequestMessage:
        pending = self._table.get(call_id)
        assert pending is not None
        return ApprovalRequestMessage(
            id=pending.id,
            run_id=pending.run_id,
            name=pending.name,
            arguments=pending.arguments,
            reason=pending.reason,
            expires_at=pending.expires_at_ms,
            redelivered=redelivered or None,
        )

    # The person's side ------------------------------------------------------------------------

    def answer(self, message: ApprovalResponseMessage) -> ErrorMessage | None:
        """Apply a person's answer; return the error to send back, if any."""
        pending = self._table.get(message.id)
        if self._table.classify(message.id) is Answer.UNKNOWN or pending is None:
            return ErrorMessage(
                code=ErrorCode.UNKNOWN_APPROVAL,
                message=f"no open approval request with id {message.id!r}",
                id=message.id,
            )
        arguments = pending.arguments
        if message.decision == "approve" and message.arguments is not None:
            spec = self._session.find_tool(pending.name)
            problem = (
                "the tool is no longer registered, so edited arguments cannot be checked"
                if spec is None
                else spec.validate_arguments(message.arguments)
            )
            if problem is not None:
                # The request stays open: the person can correct the edit or answer again.
                return ErrorMessage(
                    code=ErrorCode.INVALID_ARGUMENTS,
                    message=f"the edited arguments do not match the tool's schema: {problem}",
                    id=message.id,
                )
            arguments = dict(message.arguments)
        self._table.close(message.id)
        if message.decision == "approve":
            if message.remember == "session":
                self._table.approved_tools.add(pending.name)
            self._resolve(message.id, GateOutcome(Passage.APPROVED, arguments))
        else:
            reason = message.reason or "the user denied this call"
            self._resolve(message.id, GateOutcome(Passage.DENIED, arguments, reason))
        return None

    def cancel(self, call_id: str, reason: str) -> bool:
        pending = self._table.close(call_id)
        if pending is None:
            return False
        self._resolve(call_id, GateOutcome(Passage.CANCELLED, pending.arguments, reason))
        return True

    def cancel_run(self, run_id: str, reason: str) -> None:
        for pending in self._table.pending():
            if pending.run_id == run_id:
                self.cancel(pending.id, reason)

    def cancel_all(self, reason: str) -> None:
        for pending in self._table.pending():
            self.cancel(pending.id, reason)

    def redeliver(self, after_seq: int | None) -> list[str]:
        """Ask again, same id, every open question the returning client will not see replayed."""
        for pending in self._table.not_seen_after(after_seq):
            pending.request_seq = self._outbox.post(self._request(pending.id, redelivered=True))
        return [pending.id for pending in self._table.pending()]

    # Expiry ----------------------------------------------------------------------------------

    def _arm(self, call_id: str) -> None:
        remaining = self._table.remaining(call_id)
        if remaining is not None:
            loop = asyncio.get_running_loop()
            self._timers[call_id] = loop.call_later(remaining, self._expire, call_id)

    def _expire(self, call_id: str) -> None:
        self._timers.pop(call_id, None)
        pending = self._table.close(call_id)
        if pending is not None:
            reason = f"nobody answered the approval request within {_duration(self._timeout_s)}"
            self._resolve(call_id, GateOutcome(Passage.EXPIRED, pending.arguments, reason))

    def _resolve(self, call_id: str, outcome: GateOutcome) -> None:
        future = self._futures.get(call_id)
        if future is not None and not future.done():
            future.set_result(outcome)


def _duration(seconds: float) -> str:
    # Read by the model: whole seconds for a person's clock, milliseconds below a second (a
    # short test timeout must not read as "within 0 s").
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.0f} s"
