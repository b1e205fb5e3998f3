"""One connected session at work: routes client messages, runs one agent run at a time.

Event-loop code but no network: the server hands it parsed messages and an outbox.
"""

from __future__ import annotations

import asyncio
import logging

from bridge.agent.client_calls import ClientCalls
from bridge.agent.loop import AgentLoop, LoopConfig
from bridge.agent.outbox import Outbox
from bridge.agent.server_tools import ServerTools
from bridge.errors import CloseCode, ErrorCode, LimitExceeded, ProtocolError
from bridge.models.base import Model
from bridge.protocol import (
    PROTOCOL_VERSION,
    ClientMessage,
    CompleteReason,
    ErrorMessage,
    HelloMessage,
    Limits,
    ReadyMessage,
    RegisterToolsMessage,
    StopMessage,
    ToolProgressMessage,
    ToolResponseMessage,
    ToolsReport,
    ToolsUpdatedMessage,
    UnregisterToolsMessage,
    UserMessage,
)
from bridge.session import Session

__all__ = ["SessionRuntime"]

log = logging.getLogger("bridge.session")


class SessionRuntime:
    def __init__(
        self,
        session: Session,
        model: Model,
        outbox: Outbox,
        *,
        limits: Limits,
        server_tools: ServerTools | None = None,
        config: LoopConfig | None = None,
    ) -> None:
        self.session = session
        self._outbox = outbox
        self._limits = limits
        self.calls = ClientCalls(session.calls, outbox)
        self._agent = AgentLoop(session, model, outbox, self.calls, server_tools, config)
        self._task: asyncio.Task[CompleteReason] | None = None
        self._task_run_id: str | None = None
        self.greeted = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def handle(self, message: ClientMessage) -> None:
        """Act on one parsed client message (`ping`/`pong` belong to the connection)."""
        if isinstance(message, HelloMessage):
            self._hello(message)
            return
        if not self.greeted:
            raise ProtocolError(f"send hello before {message.type}", code=ErrorCode.HELLO_REQUIRED)
        if isinstance(message, UserMessage):
            self._submit(message.content)
        elif isinstance(message, ToolResponseMessage):
            self._reply(self.calls.deliver(message))
        elif isinstance(message, ToolProgressMessage):
            self._reply(self.calls.progress(message))
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

    def _hello(self, hello: HelloMessage) -> None:
        if self.greeted:
            raise ProtocolError("hello was already received", code=ErrorCode.ALREADY_GREETED)
        if hello.protocol != PROTOCOL_VERSION:
            self._outbox.post(
                ErrorMessage(
                    code=ErrorCode.UNSUPPORTED_PROTOCOL,
                    message=f"this server speaks protocol {PROTOCOL_VERSION}",
                )
            )
            raise LimitExceeded(
                f"unsupported protocol {hello.protocol}", close_code=CloseCode.POLICY
            )
        self.greeted = True
        report = self.session.greet(hello.tools)
        self._outbox.post(
            ReadyMessage(
                session_id=self.session.id,
                tools=report,
                server_tools=list(self.session.server_tools),
                limits=self._limits,
            )
        )

    def _tools_updated(self, report: ToolsReport, removed: list[str]) -> None:
        self._outbox.post(
            ToolsUpdatedMessage(
                tools=report, removed=removed, active=[t.name for t in self.session.tools()]
            )
        )

    def _reply(self, error: ErrorMessage | None) -> None:
        if error is not None:
            self._outbox.post(error)

    def _submit(self, text: str) -> None:
        run_id = self.session.submit(text)
        if run_id is not None:
            self._start(run_id, text)

    def _start(self, run_id: str, text: str) -> None:
        self._agent.interrupt_reason = "stopped"
        self._agent.begin(run_id, text)
        self._task_run_id = run_id
        self._task = asyncio.create_task(self._agent.run(run_id), name=f"run {run_id}")
        self._task.add_done_callback(self._on_run_done)

    def _on_run_done(self, task: asyncio.Task[CompleteReason]) -> None:
        if task is not self._task:
            return
        run_id = self._task_run_id or ""
        if task.cancelled():
            # Cancelled before its first step ran: nothing was streamed, but the run still ends.
            self._agent.complete(run_id, self._agent.interrupt_reason)
        elif task.exception() is not None:
            log.error("run %s crashed", run_id, exc_info=task.exception())
            self._agent.complete(run_id, "error")
        self._task = None
        following = self.session.finish_run()
        if following is not None:
            self._start(*following)

    def stop(self, reason: CompleteReason) -> bool:
        """End the current run at once and drop queued messages; False when nothing ran."""
        self.session.drop_queue()
        task = self._task
        if task is None or task.done():
            if reason == "stopped":
                self._outbox.post(
                    ErrorMessage(code=ErrorCode.NO_ACTIVE_RUN, message="no run to stop")
                )
            return False
        self._agent.interrupt_reason = reason
        if self.session.run_id is not None:
            self.calls.cancel_run(self.session.run_id, reason)
        task.cancel()
        return True

    async def close(self, timeout_s: float = 5.0) -> None:
        """The connection is gone: stop the run and wait (bounded) for it to settle."""
        task = self._task
        self.stop("disconnected")
        if task is not None and not task.done():
            try:
                async with asyncio.timeout(timeout_s):
                    await asyncio.shield(task)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("run did not settle within %.1f s of disconnect", timeout_s)
        self.calls.cancel_all("disconnected")
