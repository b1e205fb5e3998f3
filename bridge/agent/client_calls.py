"""Client tool calls in flight: a future per call, resolved by the reader, bounded by a timer.

The state machine is `CallTable`; this module only adds the asyncio parts: futures, one timer
handle per call, and the `tool_request` / `tool_cancel` messages. A `tool_request` is a control
message: it is queued at once, never behind a backlog, and the call's clock starts then, so a
client can never see the cancel of a request before the request itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bridge.agent.outbox import Outbox
from bridge.calls import CallTable, Delivery, TerminalStatus, terminal_for_response
from bridge.errors import ErrorCode
from bridge.protocol import (
    ErrorMessage,
    ToolCancelMessage,
    ToolProgressMessage,
    ToolRequestMessage,
    ToolResponseMessage,
)

__all__ = ["ClientCalls", "Outcome"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: TerminalStatus
    result: Any = None
    error: str | None = None


class ClientCalls:
    def __init__(
        self,
        table: CallTable,
        outbox: Outbox,
        before_request: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._table = table
        self._outbox = outbox
        self._before_request = before_request
        self._futures: dict[str, asyncio.Future[Outcome]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Set while the session is handed to another worker: its calls go with it, unended.
        self.moving = False

    async def call(
        self,
        call_id: str,
        *,
        name: str,
        run_id: str,
        arguments: dict[str, Any],
        timeout_ms: int,
        interactive: bool,
    ) -> Outcome:
        self._table.open(
            call_id,
            name=name,
            run_id=run_id,
            timeout_s=timeout_ms / 1000,
            interactive=interactive,
            arguments=arguments,
        )
        request = ToolRequestMessage(
            id=call_id,
            run_id=run_id,
            name=name,
            arguments=arguments,
            timeout_ms=timeout_ms,
            interactive=interactive,
        )
        return await self._wait(call_id, request)

    async def rejoin(self, call_id: str) -> Outcome | None:
        """The outcome of a call of a run taken over: its answer if one was accepted (before
        the move, or since, ahead of the run), else waited for while it is pending; None when
        it is neither."""
        kept = self._table.answer_of(call_id)
        if kept is not None:
            status, result, error = kept
            return Outcome(TerminalStatus(status), result, error)
        if self._table.get(call_id) is None:
            return None
        return await self._wait(call_id, None)

    def settle(self, call_id: str) -> None:
        """The run recorded the call's result: its kept answer is no longer needed."""
        self._table.settle(call_id)

    async def _wait(self, call_id: str, request: ToolRequestMessage | None) -> Outcome:
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._futures[call_id] = future
        self._arm(call_id)
        try:
            if request is not None:
                if self._before_request is not None:
                    # The call is stored as pending before the client can hear of it.
                    await self._before_request()
                pending = self._table.get(call_id)
                if pending is not None:
                    pending.request_seq = self._outbox.post(request)
            return await future
        except asyncio.CancelledError:
            if not self.moving and self._table.cancel(call_id) is not None:
                self._outbox.post(ToolCancelMessage(id=call_id, reason="cancelled"))
            raise
        finally:
            self._futures.pop(call_id, None)
            timer = self._timers.pop(call_id, None)
            if timer is not None:
                timer.cancel()

    def redeliver(self, after_seq: int | None) -> list[str]:
        """Send again every pending request the returning client will not see in the replay."""
        for call in self._table.not_seen_after(after_seq):
            call.request_seq = self._outbox.post(
                ToolRequestMessage(
                    id=call.id,
                    run_id=call.run_id,
                    name=call.name,
                    arguments=call.arguments,
                    timeout_ms=call.timeout_ms,
                    interactive=call.interactive,
                    redelivered=True,
                )
            )
        return [call.id for call in self._table.pending()]

    def cancel(self, call_id: str, reason: str) -> bool:
        """End one pending call now: the client's handler gets its `tool_cancel`."""
        if self._table.cancel(call_id) is None:
            return False
        self._outbox.post(ToolCancelMessage(id=call_id, reason=reason))
        self._resolve(call_id, Outcome(TerminalStatus.CANCELLED, error=f"cancelled: {reason}"))
        return True

    def cancel_run(self, run_id: str, reason: str) -> int:
        """Cancel every pending call of a run now, so each `tool_cancel` precedes `complete`."""
        cancelled = self._table.cancel_run(run_id)
        for call in cancelled:
            self._outbox.post(ToolCancelMessage(id=call.id, reason=reason))
            self._resolve(call.id, Outcome(TerminalStatus.CANCELLED, error=reason))
        return len(cancelled)

    def cancel_all(self, reason: str) -> None:
        for call in self._table.cancel_all():
            self._resolve(call.id, Outcome(TerminalStatus.CANCELLED, error=reason))

    def deliver(self, message: ToolResponseMessage) -> ErrorMessage | None:
        """Hand a `tool_response` to its waiting call; return the error to send back, if any."""
        delivery, _ = self._table.answer(message.id)
        if delivery is Delivery.ACCEPTED:
            status = terminal_for_response(message.status)
            error = message.error.message if message.error is not None else None
            if status is TerminalStatus.ERROR and error is None:
                error = "the tool reported an error without a message"
            self._resolve(message.id, Outcome(status, message.result, error))
            return None
        return self._refuse(message.id, delivery, "tool_response")

    def progress(self, message: ToolProgressMessage) -> ErrorMessage | None:
        delivery = self._table.progress(message.id, message.message)
        if delivery is Delivery.ACCEPTED:
            return None
        if delivery is Delivery.UNKNOWN:
            return self._refuse(message.id, delivery, "tool_progress")
        log.info("ignored tool_progress for finished call %s", message.id)
        return None

    def _refuse(self, call_id: str, delivery: Delivery, kind: str) -> ErrorMessage | None:
        if delivery is Delivery.LATE:
            log.info("dropped late %s for call %s", kind, call_id)
            return None
        if delivery is Delivery.DUPLICATE:
            return ErrorMessage(
                code=ErrorCode.DUPLICATE_RESPONSE,
                message=f"call {call_id} was already answered; this response was ignored",
                id=call_id,
            )
        return ErrorMessage(
            code=ErrorCode.UNKNOWN_CALL, message=f"no tool call with id {call_id!r}", id=call_id
        )

    def _arm(self, call_id: str) -> None:
        # The table's deadlines are on the wall clock (they survive a move to another process);
        # the timer only needs how far away the deadline is.
        remaining = self._table.remaining(call_id)
        if remaining is not None:
            loop = asyncio.get_running_loop()
            self._timers[call_id] = loop.call_later(remaining, self._on_deadline, call_id)

    def _on_deadline(self, call_id: str) -> None:
        self._timers.pop(call_id, None)
        if self._table.get(call_id) is None:
            return
        if self._table.remaining(call_id):
            # Progress moved the deadline; sleep again until the new one.
            self._arm(call_id)
            return
        for expired in self._table.expire():
            self._outbox.post(ToolCancelMessage(id=expired.id, reason="timed_out"))
            seconds = expired.deadline - expired.sent_at
            self._resolve(
                expired.id,
                Outcome(TerminalStatus.TIMED_OUT, error=f"no answer within {seconds:.1f} s"),
            )

    def _resolve(self, call_id: str, outcome: Outcome) -> None:
        # Kept until the run took it in: the run may be about to move to another worker.
        self._table.keep_answer(call_id, outcome.status.value, outcome.result, outcome.error)
        future = self._futures.get(call_id)
        if future is not None and not future.done():
            future.set_result(outcome)
