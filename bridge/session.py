"""Per-session state as one record: tools, conversation, calls, run, queue, outbound log.

Plain data and decisions only; the runtime and the server do the waiting and the sending.
Nothing here refers to a connection, so the state outlives any one of them, and `dump()` /
`load()` carry a session to storage and back exactly (tools as their definitions, recompiled
through the definition cache on load).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from bridge.access import Access, same_token
from bridge.approvals import ApprovalTable
from bridge.calls import CallState, CallTable
from bridge.conversation import (
    AssistantTurn,
    Conversation,
    ToolResult,
    Turn,
    UserTurn,
    dump_turns,
    load_turns,
)
from bridge.errors import ErrorCode, ProtocolError
from bridge.limits import SessionLimits
from bridge.outbound import OutboundLog
from bridge.protocol import (
    CompleteReason,
    RejectedTool,
    ResumeRequest,
    SnapshotCall,
    SnapshotMessage,
    SnapshotRun,
    SnapshotTurn,
    ToolsReport,
)
from bridge.record import Changes, Mark, parts, tail, to_json
from bridge.toolspec import SchemaBudget, ToolSpec, parse_tool, register_many

__all__ = ["ResumePlan", "Run", "Session"]


class ResumePlan(StrEnum):
    """What a `hello` with `resume` gets."""

    REPLAY = "replay"  # everything after last_seq is still in the window
    SNAPSHOT = "snapshot"  # it is not (or last_seq is 0): the state, then live traffic
    DENIED = "denied"  # wrong token: nothing of the session is shown


@dataclass(slots=True)
class Run:
    """The one run in progress: its id, how far it got, and why it would end if interrupted."""

    id: str
    steps: int = 0
    stop_reason: CompleteReason = "stopped"
    # Text streamed in the current step, not yet part of the conversation.
    partial: list[str] = field(default_factory=list)
    # A result of a tool hinted `untrusted_content` entered this run: destructive calls ask.
    tainted: bool = False
    # The loop guard: tool calls made in this run, and each tool's consecutive failures.
    tool_calls: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    # Results of the current step's calls as they arrive (by the model's call id), and the
    # server calls started in it: what a worker taking the run over needs to go on from here.
    results: dict[str, ToolResult] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    # Set while the run is handed to another worker: it stops without ending.
    moving: bool = False

    def spend_call(self, budget: int) -> bool:
        """Count one tool call; False once the run's budget is used up."""
        self.tool_calls += 1
        return self.tool_calls <= budget

    def breaker_open(self, name: str, after: int) -> bool:
        return self.failures.get(name, 0) >= after

    def record_outcome(self, name: str, failed: bool) -> None:
        self.failures[name] = self.failures.get(name, 0) + 1 if failed else 0


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
        self.conversation = Conversation(
            max_turns=self.limits.max_conversation_turns,
            max_chars=self.limits.max_conversation_chars,
            max_result_chars=self.limits.max_result_chars,
        )
        self.schema_budget = SchemaBudget(self.limits.tools.registration_bytes_per_minute, clock)
        self.calls = CallTable(clock, progress_cap_s=self.limits.progress_cap_ms / 1000)
        self.approvals = ApprovalTable(clock)
        self.outbound = OutboundLog(
            max_messages=self.limits.replay_max_messages, max_bytes=self.limits.replay_max_bytes
        )
        self.run: Run | None = None
        # A list, not a deque: it holds at most `max_queued_messages`, and an empty deque costs
        # over half a kilobyte in every idle session.
        self.queue: list[str] = []
        self.resume_token = secrets.token_urlsafe(24)
        # The principal that created the session; no other principal ever attaches to it.
        self.owner: str | None = None
        self._run_prefix = secrets.token_hex(3)
        self._runs = 0
        # Names the counting of items ever added to the lists (`added` in the record): a
        # session loaded from a record that kept no counts counts afresh under a new name, so
        # no copy made under the earlier counting is taken to continue this one.
        self.counting = secrets.token_hex(4)
        # Bumped whenever the client's tool set changes: a store rewrites the tools only then.
        self.tools_version = 0
        # What a shared store holds of this session (None: nothing known to be there); set by
        # whoever stores it, after each write that succeeded.
        self.stored: Mark | None = None

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run.id

    @property
    def last_seq(self) -> int:
        return self.outbound.last_seq

    def access(self) -> Access:
        untouched = (
            not self.conversation.turns
            and self.run is None
            and not self.queue
            and not len(self.calls)
            and not len(self.approvals)
        )
        return Access(self.owner, self.resume_token, untouched)

    # Tools -------------------------------------------------------------------------------------

    def tools(self) -> list[ToolSpec]:
        """Every tool the model may call: the server's first, then the client's."""
        return [*self.server_tools.values(), *self.client_tools.values()]

    def find_tool(self, name: str) -> ToolSpec | None:
        return self.server_tools.get(name) or self.client_tools.get(name)

    def greet(self, raw_tools: Iterable[Any]) -> ToolsReport:
        """A hello replaces the client's tool set: the client says what it has now."""
        self.client_tools = {}
        return self.register(raw_tools)

    def register(self, raw_tools: Iterable[Any]) -> ToolsReport:
        accepted, rejected = register_many(
            raw_tools,
            self.client_tools,
            self.limits.tools,
            reserved=self.server_tools,
            budget=self.schema_budget,
        )
        for spec in accepted:
            self.client_tools[spec.name] = spec
        self.tools_version += 1
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
        self.tools_version += 1
        return removed, unknown

    # Runs --------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.run is not None

    def submit(self, text: str) -> Run | None:
        """Start a run now (returns it) or queue the message behind the current one."""
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

    def finish_run(self) -> tuple[Run, str] | None:
        """End the current run; return the next run and its message from the queue, if any."""
        self.run = None
        if not self.queue:
            return None
        text = self.queue.pop(0)
        return self._begin(), text

    def drop_queue(self) -> int:
        dropped = len(self.queue)
        self.queue.clear()
        return dropped

    def _begin(self) -> Run:
        self._runs += 1
        self.run = Run(f"run_{self._run_prefix}_{self._runs}")
        return self.run

    # Resume ------------------------------------------------------------------------------------

    def resume_plan(self, request: ResumeRequest) -> ResumePlan:
        if not same_token(request.token, self.resume_token):
            return ResumePlan.DENIED
        if request.last_seq > 0 and self.outbound.covers(request.last_seq):
            return ResumePlan.REPLAY
        return ResumePlan.SNAPSHOT

    def snapshot(self) -> SnapshotMessage:
        """The conversation as a UI shows it, for a client whose gap the window cannot bridge."""
        results: dict[str, ToolResult] = {}
        for turn in self.conversation:
            if isinstance(turn, ToolResult):
                results[turn.call_id] = turn
        turns: list[SnapshotTurn] = []
        for turn in self.conversation:
            if isinstance(turn, UserTurn):
                turns.append(SnapshotTurn(role="user", content=turn.content, run_id=turn.run_id))
            elif isinstance(turn, AssistantTurn):
                calls = [
                    _snapshot_call(c.wire_id or c.id, c.name, c.arguments, results.get(c.id))
                    for c in turn.tool_calls
                ]
                turns.append(
                    SnapshotTurn(
                        role="assistant",
                        content=turn.content,
                        run_id=turn.run_id,
                        tool_calls=calls,
                    )
                )
        run = None
        if self.run is not None:
            run = SnapshotRun(run_id=self.run.id, content="".join(self.run.partial))
        return SnapshotMessage(
            last_seq=self.last_seq,
            turns=turns,
            run=run,
            pending_calls=[call.id for call in self.calls.pending()],
            pending_approvals=[a.id for a in self.approvals.pending()],
        )

    # Record ------------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """Everything needed to carry the session on elsewhere, as JSON-able data."""
        record = self._head(whole=True)
        record["tools"] = self._tools()
        record["conversation"] = dump_turns(self.conversation)
        record["outbound"] = self.outbound.dump()
        return record

    def changes(self) -> Changes:
        """What a store that holds `self.stored` needs to hold the record as it is now."""
        since = self.stored.lists if self.stored is not None else {}
        frames = self.outbound.frames()
        conversation, calls, approvals = self.conversation, self.calls, self.approvals
        counted: dict[str, tuple[int, Collection[Any], Callable[[Any], str]]] = {
            "turns": (conversation.added, conversation.turns, _turn_json),
            "frames": (self.outbound.last_seq, frames, str),
            "finished": (calls.finished_added, calls.finished(), _finished_json),
            "decided": (approvals.decided_added, approvals.decided(), str),
        }
        tails = {
            name: tail(added, items, since.get(name), encode)
            for name, (added, items, encode) in counted.items()
        }
        head = self._head(whole=False)
        head["outbound"] = {"seq": self.outbound.last_seq, "first": self.outbound.first_seq}
        unchanged = self.stored is not None and self.stored.tools_version == self.tools_version
        tools = None if unchanged else to_json(self._tools())
        lists = {name: (added, len(items)) for name, (added, items, _) in counted.items()}
        return parts(head, tools, tails, Mark(lists, self.tools_version))

    def _tools(self) -> list[dict[str, Any]]:
        return [spec.to_wire() for spec in self.client_tools.values()]

    def _head(self, *, whole: bool) -> dict[str, Any]:
        """The record but its tools, turns and frames (and, unless `whole`, the finished calls
        and decided approvals): the part that is small and changes on every step."""
        run = self.run
        return {
            "id": self.id,
            "resume_token": self.resume_token,
            "owner": self.owner,
            "calls": self.calls.dump(with_finished=whole),
            "approvals": self.approvals.dump(with_decided=whole),
            "run": None
            if run is None
            else {
                "id": run.id,
                "steps": run.steps,
                "stop_reason": run.stop_reason,
                "partial": "".join(run.partial),
                "tainted": run.tainted,
                "tool_calls": run.tool_calls,
                "failures": dict(run.failures),
                "results": dump_turns(run.results.values()),
                "started": sorted(run.started),
            },
            "queue": list(self.queue),
            "runs": [self._run_prefix, self._runs],
            # Items ever added to three of the lists (the fourth, the frames, counts by seq),
            # and the counting's name: a worker holding an earlier copy of the session reads
            # only what was added since.
            "added": [
                self.conversation.added,
                self.calls.finished_added,
                self.approvals.decided_added,
                self.counting,
            ],
        }

    @classmethod
    def load(
        cls,
        record: Mapping[str, Any],
        *,
        clock: Callable[[], float],
        limits: SessionLimits | None = None,
        server_tools: Mapping[str, ToolSpec] | None = None,
    ) -> Session:
        session = cls(record["id"], clock=clock, limits=limits, server_tools=server_tools)
        session.resume_token = record["resume_token"]
        session.owner = record["owner"]
        for raw in record["tools"]:
            spec = parse_tool(raw, session.limits.tools)
            session.client_tools[spec.name] = spec
        session.conversation.turns = load_turns(record["conversation"])
        session.calls = CallTable.load(
            record["calls"], clock, progress_cap_s=session.limits.progress_cap_ms / 1000
        )
        session.approvals = ApprovalTable.load(record["approvals"], clock)
        run = record["run"]
        if run is not None:
            partial = [run["partial"]] if run["partial"] else []
            session.run = Run(
                run["id"],
                run["steps"],
                run["stop_reason"],
                partial,
                run["tainted"],
                run["tool_calls"],
                dict(run["failures"]),
                {r.call_id: r for r in load_turns(run["results"]) if isinstance(r, ToolResult)},
                set(run["started"]),
            )
        session.queue = list(record["queue"])
        session._run_prefix, session._runs = record["runs"]
        session.outbound.load(record["outbound"])
        added = record.get("added")
        if added is not None:
            turns, finished, decided, session.counting = added
            session.conversation.added = turns
            session.calls.finished_added = finished
            session.approvals.decided_added = decided
        return session

    def mark(self) -> Mark:
        """The mark of the record as it is now, for a session just loaded from a store."""
        frames = self.outbound.frames()
        lists = {
            "turns": (self.conversation.added, len(self.conversation.turns)),
            "frames": (self.outbound.last_seq, len(frames)),
            "finished": (self.calls.finished_added, len(self.calls.finished())),
            "decided": (self.approvals.decided_added, len(self.approvals.decided())),
        }
        return Mark(lists, self.tools_version)


def _turn_json(turn: Turn) -> str:
    return to_json(dump_turns((turn,))[0])


def _finished_json(item: tuple[str, CallState]) -> str:
    return to_json([item[0], item[1].value])


def _snapshot_call(
    wire_id: str, name: str, arguments: str, result: ToolResult | None
) -> SnapshotCall:
    try:
        parsed: Any = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        parsed = arguments
    if result is None:
        return SnapshotCall(id=wire_id, name=name, arguments=parsed)
    ok = result.status.value == "ok"
    return SnapshotCall(
        id=wire_id,
        name=name,
        arguments=parsed,
        status=result.status.value,
        result=result.data if ok else None,
        error=None if ok else result.content,
    )
