"""The agent loop: stream a step, run the tool calls it asked for, feed results back, repeat.

Whatever ends a run (done, step limit, model error, stop, disconnect), `_settle` makes sure every
tool call the model made has exactly one terminal result in the conversation. The loop records
how the run ended on its `Run`; the runtime sends the one `complete`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from bridge.agent.approval_gate import ApprovalGate
from bridge.agent.client_calls import ClientCalls
from bridge.agent.outbox import Outbox
from bridge.agent.server_tools import ServerTools
from bridge.agent.tool_calls import CallRunner
from bridge.calls import TerminalStatus
from bridge.conversation import AssistantTurn, ToolCall, ToolResult, Turn, UserTurn, make_result
from bridge.errors import ErrorCode
from bridge.models.base import Model, ModelError, ModelEvent, TextDelta, ToolCallEvent, UsageEvent
from bridge.models.retry import StepRetryPolicy
from bridge.protocol import (
    CompleteReason,
    ErrorMessage,
    RunStartedMessage,
    StepRetryMessage,
    ToolResultMessage,
    Usage,
)
from bridge.session import Run, Session

__all__ = ["AgentLoop"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Step:
    text: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    results: dict[str, ToolResult] = field(default_factory=dict)
    assistant_recorded: bool = False
    results_recorded: bool = False
    taken_over: bool = False


class AgentLoop:
    def __init__(
        self,
        session: Session,
        model: Model,
        outbox: Outbox,
        client_calls: ClientCalls,
        gate: ApprovalGate,
        server_tools: ServerTools | None = None,
        checkpoint: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._session = session
        self._model = model
        self._outbox = outbox
        self._client_calls = client_calls
        self._gate = gate
        self._checkpoint = checkpoint or _nothing_to_store
        self.call_runner = CallRunner(
            session, client_calls, server_tools or ServerTools(), gate, self._checkpoint
        )
        # When each call still running began (by wire id): for its log line.
        self._call_started: dict[str, float] = {}

    def begin(self, run: Run, text: str) -> None:
        """Record the user's message and announce the run, before any await can be cancelled."""
        self._session.conversation.add(UserTurn(text, run.id))
        self._outbox.post(RunStartedMessage(run_id=run.id, content=text))

    async def run(self, run: Run, *, taken_over: bool = False) -> tuple[CompleteReason, Usage]:
        """Run steps until the model answers without tool calls; `begin` must come first.

        `taken_over`: the run comes from a stored record (another worker ran it until now). A
        step whose calls were out goes on waiting for them; a step that was being streamed is
        made again, after a `step_retry` that voids what the client had of it.
        """
        run_id = run.id
        usage = Usage()
        restored = self._restored_step(run) if taken_over else None
        step = restored or _Step(text=run.partial)
        reason: CompleteReason = "done"
        try:
            while True:
                if restored is None:
                    run.partial = []
                    run.results = {}
                    run.started = set()
                    step = _Step(text=run.partial)
                    run.steps += 1
                    usage = await self._stream_step(run_id, step, usage)
                    self._record_assistant(run_id, step)
                    run.partial = []
                    if not step.calls:
                        break
                    if run.steps >= self._session.limits.max_steps:
                        reason = "max_steps"
                        self._settle(run_id, step, "the run reached its step limit")
                        break
                restored = None
                await self._run_calls(run, step)
                self._record_results(step)
                if run.tool_calls > self._session.limits.max_tool_calls_per_run:
                    # The model kept calling tools past the run's budget: every call has its
                    # result (the refused ones say why), and the run ends here.
                    reason = "tool_budget"
                    break
        except asyncio.CancelledError:
            if run.moving:
                # Handed to another worker: nothing ends, the record carries the run on.
                raise
            self._client_calls.cancel_run(run_id, run.stop_reason)
            self._gate.cancel_run(run_id, run.stop_reason)
            self._settle(run_id, step, f"the run ended: {run.stop_reason}")
            self._session.calls.settle()
            raise
        except ModelError as exc:
            reason = "error"
            self._outbox.post(ErrorMessage(code=exc.code, message=exc.message, run_id=run_id))
            self._settle(run_id, step, "the model failed")
        except Exception:
            log.exception("run %s failed inside the bridge", run_id)
            reason = "error"
            self._outbox.post(
                ErrorMessage(code=ErrorCode.INTERNAL, message="internal error", run_id=run_id)
            )
            self._settle(run_id, step, "internal error")
        self._session.calls.settle()
        return reason, usage

    async def _stream_step(self, run_id: str, step: _Step, usage: Usage) -> Usage:
        """Stream one step, making it again when its stream broke (see `bridge.models.retry`).

        Only a stream the model finished counts: a failed attempt's text is voided (the client
        is told with `step_retry` before any token of the next attempt) and its calls were never
        handed out, so neither reaches the conversation nor a tool.
        """
        policy = self._step_retry_policy()
        retries_done = 0
        while True:
            try:
                return await self._stream_attempt(run_id, step, usage)
            except ModelError as exc:
                delay_s = policy.delay_s(exc, retries_done, random.random())
                if delay_s is None:
                    raise
                retries_done += 1
                # In place: the run may hold a reference to this list as its partial text.
                step.text.clear()
                step.calls.clear()
                run = self._session.run
                number = run.steps if run is not None and run.id == run_id else 0
                log.info(
                    "run %s step %d: %s; retry %d in %.2f s",
                    run_id,
                    number,
                    exc.code.value,
                    retries_done,
                    delay_s,
                )
                await self._outbox.send(
                    StepRetryMessage(
                        run_id=run_id, step=number, attempt=retries_done, reason=exc.code.value
                    )
                )
                await asyncio.sleep(delay_s)

    def _step_retry_policy(self) -> StepRetryPolicy:
        # A model built with its own policy keeps it; otherwise the session's retry budget.
        own = getattr(self._model, "step_retry", None)
        if isinstance(own, StepRetryPolicy):
            return own
        retries = self._session.limits.model_step_retries
        return StepRetryPolicy(retries=retries)

    async def _stream_attempt(self, run_id: str, step: _Step, usage: Usage) -> Usage:
        turns = _Snapshot(self._session.conversation.turns)
        stream = self._model.stream(turns, self._session.tools())
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    if event.text:
                        step.text.append(event.text)
                        await self._outbox.send_token(run_id, event.text)
                elif isinstance(event, ToolCallEvent):
                    wire_id = self._session.calls.new_id()
                    step.calls.append(
                        ToolCall(event.id or wire_id, event.name, event.arguments, wire_id)
                    )
                elif isinstance(event, UsageEvent):
                    usage = Usage(
                        prompt_tokens=usage.prompt_tokens + event.prompt_tokens,
                        completion_tokens=usage.completion_tokens + event.completion_tokens,
                        total_tokens=usage.total_tokens + event.total_tokens,
                    )
        finally:
            await _close(stream)
        return usage

    async def _run_calls(self, run: Run, step: _Step) -> None:
        async def one(call: ToolCall) -> None:
            if call.id in step.results:
                return  # ended before the run changed hands
            self._call_started[call.wire_id] = time.monotonic()
            result = await self.call_runner.execute(run, call, taken_over=step.taken_over)
            step.results[call.id] = result
            run.results[call.id] = result
            self._client_calls.settle(call.wire_id)
            # Stored before the client hears of it: an acknowledged result is never lost.
            await self._checkpoint()
            self._announce(run.id, call.wire_id, result)

        if len(step.calls) == 1:
            await one(step.calls[0])
        else:
            await asyncio.gather(*(one(call) for call in step.calls))

    def _announce(self, run_id: str, wire_id: str, result: ToolResult) -> None:
        spec = self._session.find_tool(result.name)
        started = self._call_started.pop(wire_id, None)
        if log.isEnabledFor(logging.INFO):
            source = spec.source if spec is not None else "unknown"
            ms = 0 if started is None else round((time.monotonic() - started) * 1000)
            _log_call(self._session.id, run_id, wire_id, result, source, ms)
        self._outbox.post(
            ToolResultMessage(
                id=wire_id,
                run_id=run_id,
                name=result.name,
                status=result.status.value,
                source=spec.source if spec is not None else "unknown",
                result=result.data if result.status is TerminalStatus.OK else None,
                error=None if result.status is TerminalStatus.OK else result.content,
            )
        )

    def _restored_step(self, run: Run) -> _Step | None:
        """The step a run taken over was in: its calls, if they were out; else None, and the
        step being streamed (if any) is voided for the client and made again."""
        turns = self._session.conversation.turns
        last = turns[-1] if turns else None
        if isinstance(last, AssistantTurn) and last.run_id == run.id and last.tool_calls:
            return _Step(
                text=[last.content],
                calls=list(last.tool_calls),
                results=dict(run.results),
                assistant_recorded=True,
                taken_over=True,
            )
        run.steps = sum(1 for t in turns if isinstance(t, AssistantTurn) and t.run_id == run.id)
        self._outbox.post(
            StepRetryMessage(run_id=run.id, step=run.steps + 1, attempt=1, reason="owner_changed")
        )
        return None

    def _record_assistant(self, run_id: str, step: _Step) -> None:
        if not step.assistant_recorded:
            step.assistant_recorded = True
            turn = AssistantTurn("".join(step.text), tuple(step.calls), run_id)
            self._session.conversation.add(turn)

    def _record_results(self, step: _Step) -> None:
        if not step.results_recorded:
            step.results_recorded = True
            for call in step.calls:
                self._session.conversation.add(step.results[call.id])

    def _settle(self, run_id: str, step: _Step, why: str) -> None:
        """Close the step whatever state it is in, giving each unanswered call a result."""
        self._record_assistant(run_id, step)
        for call in step.calls:
            if call.id not in step.results:
                result = make_result(call, TerminalStatus.CANCELLED, detail=why)
                step.results[call.id] = result
                self._announce(run_id, call.wire_id, result)
        self._record_results(step)


def _log_call(
    session_id: str, run_id: str, wire_id: str, result: ToolResult, source: str, ms: int
) -> None:
    """The operator's line for one tool call (never its arguments or result, which may hold
    anything); the fields go in `extra` for the JSON log format."""
    log.info(
        "session %s run %s tool %s (%s): %s, %d ms",
        session_id,
        run_id,
        result.name,
        source,
        result.status.value,
        ms,
        extra={
            "session": session_id,
            "run": run_id,
            "call": wire_id,
            "tool": result.name,
            "source": source,
            "status": result.status.value,
            "duration_ms": ms,
        },
    )


class _Snapshot(Sequence[Turn]):
    """The conversation as it is when a step starts, without copying it.

    Copying cost O(turns) on every step, which made a long run quadratic: at 10,000 calls the
    copy was a third of the bridge's time per call. Turns are only ever appended, so a view
    bounded to the current length stays exactly that snapshot.
    """

    __slots__ = ("_length", "_turns")

    def __init__(self, turns: list[Turn]) -> None:
        self._turns = turns
        self._length = len(turns)

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Turn: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Turn]: ...

    def __getitem__(self, index: int | slice) -> Turn | Sequence[Turn]:
        if isinstance(index, slice):
            return self._turns[: self._length][index]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("conversation index out of range")
        return self._turns[index]

    def __iter__(self) -> Iterator[Turn]:
        return itertools.islice(self._turns, self._length)


async def _close(stream: AsyncIterator[ModelEvent]) -> None:
    # An abandoned async generator is only closed by the garbage collector; a provider's HTTP
    # stream must end now, so close it explicitly.
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _nothing_to_store() -> None:
    return None
