"""One tool call from the model's request to its terminal result.

In order: the tool must exist, the arguments must be JSON that matches its schema, the run's
loop guard must allow another call, the approval gate must let it through, then the call runs
(client or server side), its result is checked against the output schema, and a result of a
tool hinted `untrusted_content` is fenced as data and taints the run. Each step that refuses
ends the call with the status the model should read; nothing here raises for a tool's failure.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.agent.approval_gate import ApprovalGate, GateOutcome, Passage
from bridge.agent.client_calls import ClientCalls, Outcome
from bridge.agent.server_tools import ServerTools
from bridge.calls import TerminalStatus
from bridge.conversation import ToolCall, ToolResult, make_result
from bridge.session import Run, Session
from bridge.toolspec import ToolSpec

__all__ = ["CallRunner"]

log = logging.getLogger(__name__)

_FAILED = frozenset({TerminalStatus.ERROR, TerminalStatus.TIMED_OUT})


class CallRunner:
    def __init__(
        self,
        session: Session,
        client_calls: ClientCalls,
        server_tools: ServerTools,
        gate: ApprovalGate,
        checkpoint: Callable[[], Awaitable[None]],
    ) -> None:
        self._session = session
        self._client_calls = client_calls
        self._server_tools = server_tools
        self._gate = gate
        self._checkpoint = checkpoint
        # A person may cancel a server tool's call too; its task waits on this as well.
        self._server_cancels: dict[str, asyncio.Event] = {}

    async def execute(self, run: Run, call: ToolCall, *, taken_over: bool = False) -> ToolResult:
        if taken_over:
            resumed = await self._rejoin(run, call)
            if resumed is not None:
                return resumed
        spec = self._session.find_tool(call.name)
        if spec is None:
            names = ", ".join(t.name for t in self._session.tools()) or "none"
            detail = f"there is no tool named {call.name!r}; available tools: {names}"
            return make_result(call, TerminalStatus.ERROR, detail=detail)
        arguments, problem = decode_arguments(call.arguments)
        if problem is None:
            problem = spec.validate_arguments(arguments)
        if problem is not None:
            return make_result(call, TerminalStatus.INVALID_ARGUMENTS, detail=problem)
        limits = self._session.limits
        if not run.spend_call(limits.max_tool_calls_per_run):
            detail = (
                f"this run has used its budget of {limits.max_tool_calls_per_run} tool calls; "
                "answer the user with what you have"
            )
            return make_result(call, TerminalStatus.ERROR, detail=detail)
        if run.breaker_open(spec.name, limits.tool_failures_in_a_row):
            detail = (
                f"{spec.name} failed {limits.tool_failures_in_a_row} times in a row in this run "
                "and will not be called again in it; answer without it"
            )
            return make_result(call, TerminalStatus.ERROR, detail=detail)
        gate = await self._gate.decide(run, call.wire_id, spec, arguments)
        if gate.passage is not Passage.APPROVED:
            return _refused(call, gate)
        return await self._dispatch(run, call, spec, gate.arguments)

    async def _rejoin(self, run: Run, call: ToolCall) -> ToolResult | None:
        """Pick up a call of a run taken over where it was; None when it never got that far."""
        spec = self._session.find_tool(call.name)
        if spec is None:
            return None
        outcome = await self._client_calls.rejoin(call.wire_id)
        if outcome is not None:
            return self._finish(run, call, spec, outcome)
        pending = self._session.approvals.get(call.wire_id)
        if pending is not None:
            gate = await self._gate.rejoin(call.wire_id)
            if gate.passage is not Passage.APPROVED:
                return _refused(call, gate)
            return await self._dispatch(run, call, spec, gate.arguments)
        if call.wire_id in run.started and spec.source == "server":
            # It was running in the worker that stopped: run it again only where that is safe.
            if not (spec.idempotent or spec.read_only):
                detail = "the server that was running it stopped before it answered"
                return make_result(call, TerminalStatus.OUTCOME_UNKNOWN, detail=detail)
        return None

    async def _dispatch(
        self, run: Run, call: ToolCall, spec: ToolSpec, arguments: dict[str, Any]
    ) -> ToolResult:
        if spec.source == "server":
            run.started.add(call.wire_id)
            await self._checkpoint()
            if run.moving:
                # The write found the session taken by another worker, which runs it from its
                # record: running the tool here too could run it twice.
                raise asyncio.CancelledError
            outcome = await self._run_server_tool(call.wire_id, spec, arguments)
        else:
            outcome = await self._client_calls.call(
                call.wire_id,
                name=spec.name,
                run_id=run.id,
                arguments=arguments,
                timeout_ms=spec.effective_timeout_ms(self._session.limits.tools),
                interactive=spec.interactive,
            )
        return self._finish(run, call, spec, outcome)

    def _finish(self, run: Run, call: ToolCall, spec: ToolSpec, outcome: Outcome) -> ToolResult:
        """The result of a call that ran, counted by the loop guard and the taint rule."""
        result = self._result(call, spec, outcome)
        run.record_outcome(spec.name, failed=result.status in _FAILED)
        if result.status is TerminalStatus.OK and spec.untrusted_content:
            run.tainted = True
        return result

    def _result(self, call: ToolCall, spec: ToolSpec, outcome: Outcome) -> ToolResult:
        if outcome.status is TerminalStatus.OK:
            mismatch = spec.validate_result(outcome.result)
            if mismatch is not None:
                detail = f"the result did not match the tool's output_schema: {mismatch}"
                return make_result(call, TerminalStatus.ERROR, detail=detail)
            return make_result(
                call, TerminalStatus.OK, data=outcome.result, untrusted=spec.untrusted_content
            )
        return make_result(call, outcome.status, detail=outcome.error)

    async def _run_server_tool(
        self, wire_id: str, spec: ToolSpec, arguments: dict[str, Any]
    ) -> Outcome:
        timeout_s = spec.effective_timeout_ms(self._session.limits.tools) / 1000
        cancelled = self._server_cancels[wire_id] = asyncio.Event()
        work = asyncio.ensure_future(self._server_tools.invoke(spec.name, arguments))
        stopper = asyncio.ensure_future(cancelled.wait())
        try:
            done, _ = await asyncio.wait(
                {work, stopper}, timeout=timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            self._server_cancels.pop(wire_id, None)
            stopper.cancel()
            if not work.done():
                work.cancel()
        if work not in done:
            if stopper in done:
                return Outcome(TerminalStatus.CANCELLED, error="the user cancelled this call")
            return Outcome(TerminalStatus.TIMED_OUT, error=f"no answer within {timeout_s:.1f} s")
        error = work.exception()
        if error is not None:  # a tool's failure is the model's information, not ours
            log.info("server tool %s failed: %r", spec.name, error)
            return Outcome(TerminalStatus.ERROR, error=f"{type(error).__name__}: {error}")
        return Outcome(TerminalStatus.OK, work.result())

    def cancel(self, call_id: str, reason: str) -> bool:
        """A person cancelled one call: whichever stage it is in ends it now."""
        if self._gate.cancel(call_id, reason):
            return True
        if self._client_calls.cancel(call_id, reason):
            return True
        event = self._server_cancels.get(call_id)
        if event is not None:
            event.set()
            return True
        return False


_REFUSED = {
    Passage.DENIED: TerminalStatus.DENIED,
    Passage.EXPIRED: TerminalStatus.APPROVAL_EXPIRED,
    Passage.CANCELLED: TerminalStatus.CANCELLED,
}


def _refused(call: ToolCall, gate: GateOutcome) -> ToolResult:
    return make_result(call, _REFUSED[gate.passage], detail=gate.reason)


def decode_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        return {}, f"the arguments are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return {}, f"the arguments must be a JSON object, got {type(value).__name__}"
    return value, None
