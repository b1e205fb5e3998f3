"""Per-session state: tools, conversation, run state, message queue, outbound sequence numbers.

Plain data and decisions only; the runtime and the server do the waiting and the sending.
Nothing here refers to a connection, so the state can be kept, handed to a newer connection,
or later stored outside the process.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.calls import CallTable
from bridge.conversation import Conversation
from bridge.errors import ErrorCode, ProtocolError
from bridge.protocol import RejectedTool, ToolsReport
from bridge.toolspec import ToolLimits, ToolSpec, register_many

__all__ = ["Session", "SessionLimits"]


@dataclass(frozen=True, slots=True)
class SessionLimits:
    tools: ToolLimits = field(default_factory=ToolLimits)
    max_queued_messages: int = 16
    max_message_chars: int = 100_000
    progress_cap_s: float = 600.0


def _run_ids() -> Callable[[], str]:
    prefix = secrets.token_hex(3)
    counter = itertools.count(1)
    return lambda: f"run_{prefix}_{next(counter)}"


class Session:
    def __init__(
        self,
        session_id: str,
        *,
        clock: Callable[[], float],
        limits: SessionLimits | None = None,
        server_tools: Mapping[str, ToolSpec] | None = None,
    ) -> None:
        self.id = session_id
        self.limits = limits or SessionLimits()
        self.server_tools: Mapping[str, ToolSpec] = server_tools or {}
        self.client_tools: dict[str, ToolSpec] = {}
        self.conversation = Conversation()
        self.calls = CallTable(clock, progress_cap_s=self.limits.progress_cap_s)
        self.greeted = False
        self.run_id: str | None = None
        self.queue: deque[str] = deque()
        self._seq = 0
        self._new_run_id = _run_ids()

    # Outbound sequence ------------------------------------------------------------------------

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @property
    def last_seq(self) -> int:
        return self._seq

    # Tools -------------------------------------------------------------------------------------

    def tools(self) -> list[ToolSpec]:
        """Every tool the model may call: the server's first, then the client's."""
        return [*self.server_tools.values(), *self.client_tools.values()]

    def find_tool(self, name: str) -> ToolSpec | None:
        return self.server_tools.get(name) or self.client_tools.get(name)

    def greet(self, raw_tools: Iterable[Any]) -> ToolsReport:
        """A hello replaces the client's tool set: the client says what it has now."""
        self.greeted = True
        self.client_tools = {}
        return self.register(raw_tools)

    def register(self, raw_tools: Iterable[Any]) -> ToolsReport:
        accepted, rejected = register_many(
            raw_tools, self.client_tools, self.limits.tools, reserved=self.server_tools
        )
        for spec in accepted:
            self.client_tools[spec.name] = spec
        return ToolsReport(
            accepted=[spec.name for spec in accepted],
            rejected=[RejectedTool(name=r.name, code=r.code, reason=r.reason) for r in rejected],
        )

    def unregister(self, names: Iterable[str]) -> tuple[list[str], list[str]]:
        removed, unknown = [], []
        for name in names:
            if self.client_tools.pop(name, None) is None:
                unknown.append(name)
            else:
                removed.append(name)
        return removed, unknown

    # Runs --------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.run_id is not None

    def submit(self, text: str) -> str | None:
        """Start a run now (returns its id) or queue the message behind the current one."""
        if len(text) > self.limits.max_message_chars:
            raise ProtocolError(
                f"message is longer than {self.limits.max_message_chars} characters",
                code=ErrorCode.INVALID_MESSAGE,
            )
        if self.running:
            if len(self.queue) >= self.limits.max_queued_messages:
                raise ProtocolError(
                    f"{self.limits.max_queued_messages} messages are already queued",
                    code=ErrorCode.QUEUE_FULL,
                )
            self.queue.append(text)
            return None
        return self._begin()

    def finish_run(self) -> tuple[str, str] | None:
        """End the current run; return the next (run_id, message) from the queue, if any."""
        self.run_id = None
        if not self.queue:
            return None
        text = self.queue.popleft()
        return self._begin(), text

    def drop_queue(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        return dropped

    def _begin(self) -> str:
        self.run_id = self._new_run_id()
        return self.run_id
