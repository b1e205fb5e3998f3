"""One session at work: routes client messages, runs one agent run at a time.

A runtime lives as long as its session, not as long as a connection: connections attach to its
outbox and leave again, and the run goes on in between. Event-loop code but no network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bridge.agent.approval_gate import ApprovalGate
from bridge.agent.client_calls import ClientCalls
from bridge.agent.loop import AgentLoop
from bridge.agent.outbox import Outbox
from bridge.agent.server_tools import ServerTools
from bridge.approvals import ApprovalPolicy, mode_policy
from bridge.errors import ErrorCode, ProtocolError
from bridge.models.base import Model
from bridge.protocol import (
    ApprovalResponseMessage,
    CancelCallMessage,
    ClientMessage,
    CompleteMessage,
    CompleteReason,
    ErrorMessage,
    Limits,
    ReadyMessage,
    RegisterToolsMessage,
    Resumed,
    SnapshotMessage,
    StopMessage,
    ToolProgressMessage,
    ToolResponseMessage,
    ToolsReport,
    ToolsUpdatedMessage,
    UnregisterToolsMessage,
    Usage,
    UserMessage,
)
from bridge.session import ResumePlan, Run, Session

__all__ = ["SessionRuntime"]

log = logging.getLogger(__name__)


class SessionRuntime:
    def __init__(
        self,
        session: Session,
        model: Model,
        *,
        limits: Limits,
        queue_size: int,
        server_tools: ServerTools | None = None,
        approval: ApprovalPolicy | None = None,
        store: Callable[[Session], Awaitable[None]] | None = None,
    ) -> None:
        self.session = session
        self.outbox = Outbox(session.outbound, queue_size=queue_size)
        self._limits = limits
        # Where the session's record goes when other workers may carry it on (None: nowhere).
        self._store = store
        self._storing = asyncio.Lock()
        self.stored_seq = session.last_seq
        checkpoint = self.checkpoint if store is not None else None
        self.client_calls = ClientCalls(session.calls, self.outbox, checkpoint)
        self.approvals = ApprovalGate(
            session,
            self.outbox,
            approval or mode_policy("destructive"),
            session.limits.approval_timeout_ms / 1000,
            checkpoint,
        )
        self._agent = AgentLoop(
            session,
            model,
            self.outbox,
            self.client_calls,
            self.approvals,
            server_tools,
            checkpoint,
        )
        self._task: asyncio.Task[tuple[CompleteReason, Usage]] | None = None
        self._task_run: Run | None = None
        self._run_started = 0.0  # monotonic; for the run's log line

    # Other workers -----------------------------------------------------------------------------

    async def checkpoint(self) -> None:
        """Store the session's record as it is now (one write at a time, in order)."""
        if self._store is None:
            return
        async with self._storing:
            seq = self.session.last_seq
            await self._store(self.session)
            self.stored_seq = max(self.stored_seq, seq)

    @property
    def stores(self) -> bool:
        """Whether the record is stored as the session goes (other workers may carry it on)."""
        return self._store is not None

    async def stored_through(self, seq: int) -> None:
        """Return once the record holds everything up to `seq`: a frame is only sent to the
        client after the state that made it is stored, so no worker taking over can lose it."""
        if self._store is not None and self.stored_seq < seq:
            await self.checkpoint()

    def take_over(self) -> None:
        """Go on with the run of a record that another worker was running."""
        run = self.session.run
        if run is not None and self._task is None:
            self._launch(run, taken_over=True)

    async def hand_over(self) -> None:
        """Stop without ending anything, so another worker carries the run on from the record."""
        task = self.stop_for_move()
        if task is not None:
            await asyncio.wait({task}, timeout=5.0)

    def stop_for_move(self) -> asyncio.Task[tuple[CompleteReason, Usage]] | None:
        """`hand_over` without waiting: the run is cancelled and stops at its next step; the
        task it returns (if any) finishes when it has."""
        run = self._task_run
        task = self._task
        if run is not None:
            run.moving = True
        self.client_calls.moving = True
        self.approvals.moving = True
        if task is None or task.done():
            return None
        task.cancel()
        return task

    # Connections -------------------------------------------------------------------------------

    def greet(self, tools: list[dict[str, Any]], notify: Callable[[], None]) -> ReadyMessage:
        """A fresh start on this session (no resume): the ready message for the new client."""
        report = self.session.greet(tools)
        self.outbox.attach(None, notify)
        return self._ready(report)

    def resume(
        self,
        tools: list[dict[str, Any]],
        plan: ResumePlan,
        last_seq: int,
        notify: Callable[[], None],
    ) -> tuple[ReadyMessage, SnapshotMessage | None]:
        """A returning client: replay after `last_seq`, or a snapshot when the window cannot."""
        report = self.session.greet(tools)
        after = last_seq if plan is ResumePlan.REPLAY else None
        snapshot = None if after is not None else self.session.snapshot()
        # The first seq the client will see after ready (and snapshot), before redelivered
        # requests take theirs.
        from_seq = (after if after is not None else self.session.last_seq) + 1
        self.outbox.attach(after, notify)
        pending = self.client_calls.redeliver(after)
        asked = self.approvals.redeliver(after)
        resumed = Resumed(
            from_seq=from_seq, pending_calls=pending, pending_approvals=asked, gap=after is None
        )
        ready = self._ready(report)
        ready.resumed = resumed
        return ready, snapshot

    def _ready(self, report: ToolsReport) -> ReadyMessage:
        return ReadyMessage(
            session_id=self.session.id,
            tools=report,
            server_tools=list(self.session.server_tools),
            limits=self._limits,
            resume_token=self.session.resume_token,
        )

    # Messages ----------------------------------------------------------------------------------

    async def handle(self, message: ClientMessage) -> None:
        """Act on one parsed client message of an attached, greeted connection."""
        if isinstance(message, UserMessage):
            self._submit(message.content)
        elif isinstance(message, ToolResponseMessage):
            self._reply(self.client_calls.deliver(message))
        elif isinstance(message, ApprovalResponseMessage):
            self._reply(self.approvals.answer(message))
        elif isinstance(message, CancelCallMessage):
            if not self._agent.call_runner.cancel(message.id, "by_user"):
                self.outbox.post(
                    ErrorMessage(
                        code=ErrorCode.UNKNOWN_CALL,
                        message=f"no call {message.id!r} is waiting or running",
                        id=message.id,
                    )
                )
        elif isinstance(message, ToolProgressMessage):
            self._reply(self.client_calls.progress(message))
        elif isinstance(message, StopMessage):
            self.stop("stopped")
        elif isinstance(message, RegisterToolsMessage):
            report = self.session.register(message.tools)
            self._tools_updated(report, removed=[])
        elif isinstance(message, UnregisterToolsMessage):
            removed, unknown = self.session.unregister(message.names)
            self._tools_updated(ToolsReport(accepted=[], rejected=[]), removed=removed)
            if unknown:
                raise ProtocolError(
                    f"no client tools named {', '.join(unknown)}", code=ErrorCode.UNKNOWN_TOOL
                )

    def _tools_updated(self, report: ToolsReport, removed: list[str]) -> None:
        self.outbox.post(
            ToolsUpdatedMessage(
                tools=report, removed=removed, active=[t.name for t in self.session.tools()]
            )
        )

    def _reply(self, error: ErrorMessage | None) -> None:
        if error is not None:
            self.outbox.post(error)

    # Runs --------------------------------------------------------------------------------------

    def _submit(self, text: str) -> None:
        run = self.session.submit(text)
        if run is not None:
            self._start(run, text)

    def _start(self, run: Run, text: str) -> None:
        self._agent.begin(run, text)
        self._launch(run)

    def _launch(self, run: Run, *, taken_over: bool = False) -> None:
        self._task_run = run
        self._run_started = time.monotonic()
        work = self._agent.run(run, taken_over=taken_over)
        self._task = asyncio.create_task(work, name=f"run {run.id}")
        self._task.add_done_callback(self._on_run_done)

    def _on_run_done(self, task: asyncio.Task[tuple[CompleteReason, Usage]]) -> None:
        """The one place a run's `complete` is sent, whatever ended it."""
        if task is not self._task or self._task_run is None:
            return
        run = self._task_run
        if run.moving:
            return  # another worker ends it
        usage: Usage | None = None
        if task.cancelled():
            reason: CompleteReason = run.stop_reason
        elif task.exception() is not None:
            log.error("run %s crashed", run.id, exc_info=task.exception())
            reason = "error"
        else:
            reason, usage = task.result()
        _log_run(self.session.id, run, reason, time.monotonic() - self._run_started)
        has_usage = usage is not None and (
            usage.total_tokens or usage.prompt_tokens or usage.completion_tokens
        )
        self.outbox.post(
            CompleteMessage(
                run_id=run.id, reason=reason, steps=run.steps, usage=usage if has_usage else None
            )
        )
        self._task = None
        self._task_run = None
        following = self.session.finish_run()
        if following is not None:
            self._start(*following)

    def stop(self, reason: CompleteReason) -> bool:
        """End the current run at once and drop queued messages; False when nothing ran."""
        self.session.drop_queue()
        task, run = self._task, self._task_run
        if task is None or task.done() or run is None:
            if reason == "stopped":
                self.outbox.post(
                    ErrorMessage(code=ErrorCode.NO_ACTIVE_RUN, message="no run to stop")
                )
            return False
        run.stop_reason = reason
        self.client_calls.cancel_run(run.id, reason)
        self.approvals.cancel_run(run.id, reason)
        task.cancel()
        return True

    async def end(self, reason: CompleteReason, timeout_s: float = 5.0) -> None:
        """Nobody is coming back: stop the run, wait (bounded) for it to settle, cancel the rest."""
        task = self._task
        self.stop(reason)
        if task is not None and not task.done():
            # `wait`, not `await task`: a run that ends cancelled has settled, it did not fail.
            await asyncio.wait({task}, timeout=timeout_s)
            if not task.done():
                log.warning("run did not settle within %.1f s", timeout_s)
        self.client_calls.cancel_all(reason)
        self.approvals.cancel_all(reason)


def _log_run(session_id: str, run: Run, reason: CompleteReason, duration_s: float) -> None:
    """The operator's line for one run; the fields go in `extra` for the JSON log format."""
    if not log.isEnabledFor(logging.INFO):
        return
    duration_ms = round(duration_s * 1000)
    log.info(
        "session %s run %s ended: %s after %d steps, %d ms",
        session_id,
        run.id,
        reason,
        run.steps,
        duration_ms,
        extra={
            "session": session_id,
            "run": run.id,
            "reason": reason,
            "steps": run.steps,
            "duration_ms": duration_ms,
        },
    )
