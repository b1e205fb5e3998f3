"""An asyncio client: register Python functions as tools, send messages, read the stream.

The client outlives its connections. After an unexpected close or a network error it reconnects
(the first retry at once, then a capped, jittered backoff) and resumes the session with the
`resume_token` of the last `ready` and the highest `seq` it processed, so the server replays what
was missed. Frames are deduplicated by `seq`, so the app sees each server message once. A tool's
result is kept until the server has it, so a result lost with a connection is sent again, and a
handler never runs twice for one call id. It does not reconnect after `close()`, `bye()`, or a
close that says retrying is pointless (authentication, policy, size, replaced, normal close).
After `4429` (too many connections, sessions or frames from this client's address) it waits as
long as the close reason asks (`retry in N s`), and at least `rate_limited_backoff_s`: coming
back at once would only be refused again, and would push the server's next admission further.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, overload
from urllib.parse import quote, urlsplit, urlunsplit

import websockets
from pydantic import TypeAdapter
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from bridge_client.schema import context_parameter, parameters_schema

__all__ = [
    "Approval",
    "ApprovalRequest",
    "Approver",
    "BridgeClient",
    "ConversationReset",
    "RunResult",
    "ToolContext",
    "ToolDenied",
    "backoff_delay",
    "rate_limited_delay",
]

F = TypeVar("F", bound=Callable[..., Any])
_JSON = TypeAdapter(Any)
_END = object()

# Closes after which the same hello would be refused again, or that the server meant as final.
# 4409 is "replaced by a newer connection": coming back would replace the newer one in turn.
_FINAL_CLOSE_CODES = frozenset({1000, 1002, 1003, 1007, 1008, 1009, 1010, 4401, 4403, 4409})
# Until the first `ready` says otherwise: the protocol's default interval plus timeout.
_DEFAULT_DEAD_AFTER_S = 40.0
# Call ids remembered after their call ended, so a stray redelivery can never run a handler again.
_MAX_ENDED_CALLS = 10_000
_SYNC_NONCE = "bridge_client.sync."

_CallState = Literal["running", "kept", "ended"]


class ToolDenied(Exception):
    """Raise from a handler when the user refused: the call ends as `denied`, not `error`."""


class ConversationReset(Exception):
    """The server no longer had the session (it expired or the server restarted without it).

    The client has started a fresh session with the same tools; the conversation so far, its
    pending calls and any run in progress are gone. `run()` waiting on such a run raises this.
    """


def backoff_delay(
    attempt: int, *, base_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before reconnect attempt `attempt` (0-based) of one outage.

    The first retry goes at once: most drops are a blip and the session is waiting. Later ones
    wait a random time between half and all of a doubling, capped ceiling, so clients that lost
    the same server do not come back in lockstep.
    """
    if attempt <= 0:
        return 0.0
    ceiling: float = min(cap_s, base_s * 2.0 ** (attempt - 1))
    return ceiling / 2 + rand() * ceiling / 2


# The server's 4429 reasons say when to come back: "...; retry in 12 s", "try again in a minute".
_RETRY_IN = re.compile(
    r"(?:retry|try again) in (\d+(?:\.\d+)?) ?s\b|(?:retry|try again) in a minute"
)
# A hint is honoured up to this; a reason asking for longer is more likely a mistake than a plan.
_MAX_RETRY_HINT_S = 600.0


def rate_limited_delay(
    reason: str, *, floor_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait after a `4429` close with this reason: the wait the reason asks for (or
    `floor_s` when it names none, or less), plus up to a quarter more so that clients refused
    together do not come back together."""
    match = _RETRY_IN.search(reason)
    hint = 0.0
    if match is not None:
        hint = float(match.group(1)) if match.group(1) is not None else 60.0
    wait = min(_MAX_RETRY_HINT_S, max(floor_s, hint))
    return wait + rand() * wait / 4


@dataclass
class ToolContext:
    """Given to a handler that declares a parameter of this type."""

    call_id: str
    _client: BridgeClient

    async def progress(self, progress: float | None = None, message: str | None = None) -> None:
        """Tell the server the call is alive: it pushes the deadline out (up to a hard cap).

        Best effort: while the client is reconnecting the report is dropped, not queued.
        """
        payload: dict[str, Any] = {"type": "tool_progress", "id": self.call_id}
        if progress is not None:
            payload["progress"] = progress
        if message is not None:
            payload["message"] = message
        link = self._client._link
        if link is not None and link.ready:
            await self._client._send_on(link, payload)


@dataclass(frozen=True)
class Approval:
    """A person's answer to an approval request: `Approval.approve(...)` or `Approval.deny(...)`.

    `arguments` replaces the model's arguments (the server checks them against the tool's schema
    again); `remember="session"` approves further calls of the same tool in this session.
    """

    decision: Literal["approve", "deny"]
    reason: str | None = None
    arguments: dict[str, Any] | None = None
    remember: Literal["session"] | None = None

    @classmethod
    def approve(
        cls, *, arguments: dict[str, Any] | None = None, remember: bool = False
    ) -> Approval:
        return cls("approve", arguments=arguments, remember="session" if remember else None)

    @classmethod
    def deny(cls, reason: str | None = None) -> Approval:
        return cls("deny", reason=reason)

    def to_wire(self, call_id: str) -> dict[str, Any]:
        message: dict[str, Any] = {
            "type": "approval_response",
            "id": call_id,
            "decision": self.decision,
        }
        if self.reason is not None:
            message["reason"] = self.reason
        if self.decision == "approve":
            if self.arguments is not None:
                message["arguments"] = self.arguments
            if self.remember is not None:
                message["remember"] = self.remember
        return message


@dataclass(frozen=True)
class ApprovalRequest:
    """The server asks before a call runs; `id` is the call's own id.

    Given to the `@client.approver` callback, or, without one, handed out by
    `next_approval()`: answer it with `approve()` or `deny()`. `expires_at` is the server's wall
    clock in ms since the epoch; past it the call ends `approval_expired`.
    """

    id: str
    run_id: str
    name: str
    arguments: dict[str, Any]
    reason: str
    expires_at: int
    redelivered: bool
    _client: BridgeClient = field(repr=False, compare=False)

    async def approve(
        self, *, arguments: dict[str, Any] | None = None, remember: bool = False
    ) -> None:
        await self._client.answer_approval(
            self.id, Approval.approve(arguments=arguments, remember=remember)
        )

    async def deny(self, reason: str | None = None) -> None:
        await self._client.answer_approval(self.id, Approval.deny(reason))


# True approves and False denies, for approvers with nothing more to say.
ApprovalAnswer = Approval | bool
Approver = Callable[[ApprovalRequest], ApprovalAnswer | Awaitable[ApprovalAnswer]]
A = TypeVar("A", bound=Approver)

# What the client knows of one approval: handed out and not answered yet, or answered (the
# answer is kept until the server shows it has it, so a resume can send it again).
_ApprovalState = Literal["waiting", "answered"]


@dataclass
class _Tool:
    definition: dict[str, Any]
    handler: Callable[..., Any]
    context_param: str | None


@dataclass
class RunResult:
    """A run as `run()` saw it. `reason` is the `complete` reason, or `unknown` when the run ended
    while the client was away for longer than the server's replay window (its `snapshot` showed
    the run's text but not how it ended)."""

    run_id: str
    text: str
    reason: str
    events: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None


@dataclass(eq=False)
class _Link:
    """One WebSocket connection of the client's session."""

    ws: ClientConnection
    number: int
    ready: bool = False
    # Call ids answered on this connection: a resume and a redelivery of the same call must not
    # both send the result (the second would earn a `duplicate_response`).
    answered: set[str] = field(default_factory=set)
    # Approval answers sent on this connection, kept apart from `answered`: after an approval
    # the same call id gets its tool_response on the same connection.
    approvals_sent: set[str] = field(default_factory=set)
    sync_nonce: str | None = None


@dataclass(eq=False)
class _Outgoing:
    """A user message until its `run_started` shows the server has it."""

    content: str
    link: _Link | None = None
    run_id: str | None = None


class BridgeClient:
    """`async with BridgeClient(url) as client:` connects, says hello and registers the tools.

    Reconnecting: `reconnect=False` gives the old behaviour (the first close ends the client).
    `reconnects` counts the connections made after the first, `dead_links` the connections
    given up for silence (no frame for `heartbeat_interval_ms + heartbeat_timeout_ms` of
    `ready.limits`), `duplicates` the replayed frames dropped because their `seq` was seen,
    `results_resent` the tool results sent again because a connection may have lost them.

    When a resume finds that the server no longer has the session (`error session_expired`),
    the client carries on in a fresh session with the same tools, adds one to
    `conversation_resets`, calls `on_conversation_reset()` (if given; it may be async), and a
    `run()` still waiting raises `ConversationReset`. The `error` event is also in the stream.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        client_name: str = "bridge_client/python",
        answer_pings: bool = True,
        max_size: int = 16 * 1024 * 1024,
        reconnect: bool = True,
        max_reconnect_attempts: int | None = None,
        backoff_base_s: float = 0.1,
        backoff_cap_s: float = 5.0,
        rate_limited_backoff_s: float = 5.0,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
        on_conversation_reset: Callable[[], Any] | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self._client_name = client_name
        self.answer_pings = answer_pings
        self._max_size = max_size
        self.reconnect = reconnect
        self.max_reconnect_attempts = max_reconnect_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.rate_limited_backoff_s = rate_limited_backoff_s
        self._open_timeout_s = open_timeout_s
        self._close_timeout_s = close_timeout_s
        self.on_conversation_reset = on_conversation_reset
        self._tools: dict[str, _Tool] = {}
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._supervisor: asyncio.Task[None] | None = None
        self._link: _Link | None = None
        self._links = 0
        self._greet = True
        self._closing = False
        self._finished = False
        self._changed: asyncio.Future[None] | None = None
        self._failures = 0
        self._dead_after_s = _DEFAULT_DEAD_AFTER_S
        self._last_seq = 0
        self._resume_token: str | None = None
        self._calls: dict[str, _CallState] = {}
        self._handlers: dict[str, asyncio.Task[None]] = {}
        self._kept: dict[str, dict[str, Any]] = {}
        self._outgoing: list[_Outgoing] = []
        self._active_runs: set[str] = set()
        self._known_runs: set[str] = set()
        self._syncs = 0
        self.ready: dict[str, Any] = {}
        self.close_code: int | None = None
        self.close_reason = ""
        self.reconnects = 0
        self.dead_links = 0
        self.duplicates = 0
        self.results_resent = 0
        self.conversation_resets = 0
        self._sent_once: set[str] = set()
        self._approver: Approver | None = None
        self._approver_tasks: dict[str, asyncio.Task[None]] = {}
        self._approvals: dict[str, _ApprovalState] = {}
        self._approval_answers: dict[str, dict[str, Any]] = {}
        self._approval_requests: dict[str, ApprovalRequest] = {}
        self._approval_queue: asyncio.Queue[ApprovalRequest] = asyncio.Queue()
        self.approvals_resent = 0

    # Tools -------------------------------------------------------------------------------------

    @overload
    def tool(self, func: F) -> F: ...

    @overload
    def tool(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_ms: int | None = None,
        interactive: bool = False,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        untrusted_content: bool = False,
        output_schema: dict[str, Any] | None = None,
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        func: F | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_ms: int | None = None,
        interactive: bool = False,
        read_only: bool = False,
        destructive: bool = False,
        idempotent: bool = False,
        untrusted_content: bool = False,
        output_schema: dict[str, Any] | None = None,
    ) -> F | Callable[[F], F]:
        """Register a handler (sync or async); its JSON Schema comes from its type hints.

        `idempotent=True` tells the server and the model the tool is safe to run again with the
        same arguments. This client never runs a handler twice for one call either way.
        `destructive=True` makes the server ask a person before each call (by default).
        `untrusted_content=True` says the result holds text the user did not write (a web page,
        a file, an email): the model reads it fenced as data, and every destructive call later
        in the same run asks a person first.
        """

        def register(fn: F) -> F:
            ctx = context_parameter(fn, ToolContext)
            definition: dict[str, Any] = {
                "name": name or fn.__name__,
                "description": description or inspect.getdoc(fn) or "",
                "parameters": parameters_schema(fn, skip=ctx),
            }
            for key, value in (
                ("timeout_ms", timeout_ms),
                ("output_schema", output_schema),
                ("interactive", interactive or None),
                ("read_only", read_only or None),
                ("destructive", destructive or None),
                ("idempotent", idempotent or None),
                ("untrusted_content", untrusted_content or None),
            ):
                if value is not None:
                    definition[key] = value
            self._tools[definition["name"]] = _Tool(definition, fn, ctx)
            return fn

        return register(func) if func is not None else register

    @property
    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition for t in self._tools.values()]

    # Approvals ---------------------------------------------------------------------------------

    def approver(self, func: A) -> A:
        """Decide approval requests with `func` (sync or async), given the `ApprovalRequest`.

        It returns `Approval.approve(...)`, `Approval.deny(reason)`, or True / False. It runs
        once per request, even when a resume delivers the request again; if it raises, the call
        is denied with the error as the reason. Without an approver, requests wait for the app
        in `next_approval()`.
        """
        self._approver = func
        return func

    async def next_approval(self) -> ApprovalRequest:
        """The next approval request for the app to answer (when no approver is set).

        A request comes out once, even when a resume delivers it again; one whose edited
        arguments the server refused comes out again, so it can be answered once more.
        """
        return await self._approval_queue.get()

    @property
    def pending_approvals(self) -> list[str]:
        """Ids of the approval requests not answered yet."""
        return [cid for cid, state in self._approvals.items() if state == "waiting"]

    async def answer_approval(self, call_id: str, approval: Approval) -> None:
        """Send a person's answer. Kept until the server shows it has it, and sent again on a
        resume when the server still waits for it."""
        response = approval.to_wire(call_id)
        self._approvals[call_id] = "answered"
        self._approval_answers[call_id] = response
        link = self._link
        if link is not None and link.ready:
            link.approvals_sent.add(call_id)
            await self._send_on(link, response)

    async def cancel_call(self, call_id: str) -> None:
        """Cancel one call (waiting for approval or running): it ends `cancelled`, reason
        `by_user`, and the run goes on without it. An unknown id earns `error unknown_call`."""
        await self.send_json({"type": "cancel_call", "id": call_id})

    # Connection --------------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The highest `seq` processed: what a resume asks the server to replay after."""
        return self._last_seq

    @property
    def resume_token(self) -> str | None:
        return self._resume_token

    @property
    def connected(self) -> bool:
        """True while a connection is up and its `ready` has arrived."""
        return self._link is not None and self._link.ready

    async def __aenter__(self) -> BridgeClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, *, hello: bool = True) -> None:
        """Connect, and (with `hello`) register the tools and wait for `ready`.

        With `hello=False` the app speaks the protocol itself and the client never reconnects.
        """
        self._greet = hello
        self._closing = False
        self._finished = False
        link = await self._dial()
        self._supervisor = asyncio.create_task(self._supervise(link))
        if hello:
            self.ready = await self.wait_for("ready")

    async def bye(self) -> None:
        """Leave for good: the server ends the session now instead of holding it for a resume."""
        self._closing = True
        link = self._link
        if link is not None:
            try:
                await link.ws.send(json.dumps({"type": "bye"}))
                async with asyncio.timeout(self._close_timeout_s):
                    await link.ws.wait_closed()
            except (websockets.ConnectionClosed, TimeoutError):
                pass
        await self.close()

    async def close(self) -> None:
        """Close without `bye`: the server holds the session for its grace period."""
        self._closing = True
        for task in self._handlers.values():
            task.cancel()
        for task in self._approver_tasks.values():
            task.cancel()
        link = self._link
        if link is not None:
            await link.ws.close()
        supervisor = self._supervisor
        if supervisor is not None:
            if link is None and not supervisor.done():
                # Between two connections: waiting out a backoff or dialing.
                supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)

    def _should_reconnect(self, code: int | None) -> bool:
        if self._closing or not self.reconnect or not self._greet:
            return False
        if code == 4408 and not self.answer_pings:
            # This client chose not to answer pings: a new connection would end the same way.
            return False
        return code not in _FINAL_CLOSE_CODES

    async def _dial(self) -> _Link:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        ws = await ws_connect(
            self.url,
            additional_headers=headers,
            max_size=self._max_size,
            compression=None,
            open_timeout=self._open_timeout_s,
            close_timeout=self._close_timeout_s,
        )
        self._links += 1
        link = _Link(ws, self._links)
        if self._greet:
            hello: dict[str, Any] = {
                "type": "hello",
                "protocol": 1,
                "tools": self.definitions,
                "client": self._client_name,
            }
            if self._resume_token is not None:
                hello["resume"] = {"token": self._resume_token, "last_seq": self._last_seq}
            try:
                await ws.send(json.dumps(hello))
            except websockets.ConnectionClosed:
                await ws.close()
                raise
        self._link = link
        return link

    async def _supervise(self, link: _Link | None) -> None:
        try:
            while link is not None:
                code = await self._pump(link)
                self._link = None
                self._pulse()
                if not self._should_reconnect(code):
                    return
                link = await self._redial()
        finally:
            self._link = None
            self._finished = True
            for task in self._handlers.values():
                task.cancel()
            self._events.put_nowait(_END)
            self._pulse()

    async def _redial(self) -> _Link | None:
        while not self._closing:
            attempts = self._failures
            if self.max_reconnect_attempts is not None and attempts >= self.max_reconnect_attempts:
                return None
            self._failures += 1
            delay = backoff_delay(attempts, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
            if self.close_code == 4429:
                delay = max(
                    delay,
                    rate_limited_delay(self.close_reason, floor_s=self.rate_limited_backoff_s),
                )
            if delay > 0:
                await asyncio.sleep(delay)
            if self._closing:
                return None
            try:
                link = await self._dial()
            except (OSError, TimeoutError, websockets.WebSocketException):
                continue
            self.reconnects += 1
            return link
        return None

    async def _pump(self, link: _Link) -> int | None:
        """Read one connection until it ends; the close code, 1006 for a silent or broken link."""
        ws = link.ws
        try:
            while True:
                try:
                    async with asyncio.timeout(self._dead_after_s):
                        frame = await ws.recv()
                except TimeoutError:
                    # Half-open links send nothing and never fail on their own.
                    self.dead_links += 1
                    ws.transport.abort()
                    self.close_code = 1006
                    return 1006
                try:
                    event = json.loads(frame)
                except ValueError:
                    continue
                if isinstance(event, dict):
                    await self._dispatch(link, event)
        except websockets.ConnectionClosed:
            pass
        self.close_code = ws.close_code
        self.close_reason = ws.close_reason or ""
        return ws.close_code

    def _pulse(self) -> None:
        """Wake whoever waits for a usable connection (or for the end)."""
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    async def _usable_link(self) -> _Link:
        while True:
            if self._finished:
                raise ConnectionError(f"connection closed with code {self.close_code}")
            link = self._link
            if link is not None and (link.ready or not self._greet):
                return link
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._changed)

    # Sending -----------------------------------------------------------------------------------

    async def send_json(self, payload: dict[str, Any]) -> None:
        """Send one frame; while reconnecting, waits for the next connection to be ready.

        Raises `ConnectionError` when the client is closed for good, or when the connection
        drops while the frame is being written (it may or may not have arrived).
        """
        await self.send_raw(json.dumps(payload))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as is (for testing a server's handling of bad input)."""
        link = await self._usable_link()
        try:
            await link.ws.send(frame)
        except websockets.ConnectionClosed as exc:
            raise ConnectionError("the connection dropped while sending") from exc

    async def send(self, text: str) -> None:
        """Send a user message. Across drops it is delivered once: a message that may have been
        lost with a connection is sent again only when the server shows it never got it."""
        await self._submit(text)

    async def stop(self) -> None:
        # The server drops messages queued behind the run, so they must not be sent again.
        self._outgoing = [e for e in self._outgoing if e.run_id is not None]
        await self.send_json({"type": "stop"})

    async def _send_on(self, link: _Link, payload: dict[str, Any]) -> bool:
        """Write on one connection; a frame lost with it is the resume's business."""
        try:
            await link.ws.send(json.dumps(payload))
        except websockets.ConnectionClosed:
            return False
        return True

    async def _submit(self, text: str) -> _Outgoing:
        if self._finished:
            raise ConnectionError(f"connection closed with code {self.close_code}")
        entry = _Outgoing(text)
        self._outgoing.append(entry)
        link = self._link
        if link is not None and link.ready:
            await self._flush(link)
        return entry

    async def _flush(self, link: _Link) -> None:
        """Send the messages not sent yet, in order, unless a check of earlier ones is open."""
        if link.sync_nonce is not None:
            return
        for entry in list(self._outgoing):
            if entry.link is None and self._link is link:
                entry.link = link
                await self._send_on(link, {"type": "message", "content": entry.content})

    def _uncertain(self, link: _Link) -> list[_Outgoing]:
        return [
            e
            for e in self._outgoing
            if e.run_id is None and e.link is not None and e.link is not link
        ]

    async def _reconcile(self, link: _Link) -> None:
        """Find out whether messages sent on a lost connection reached the server.

        A message the server got starts a run at once when none is running, so once a ping sent
        now is answered with no run going, every such message still unconfirmed was lost.
        """
        if link.sync_nonce is not None:
            return
        if not self._uncertain(link):
            await self._flush(link)
            return
        self._syncs += 1
        link.sync_nonce = f"{_SYNC_NONCE}{self._syncs}"
        await self._send_on(link, {"type": "ping", "nonce": link.sync_nonce})

    async def _on_sync(self, link: _Link) -> None:
        link.sync_nonce = None
        if self._active_runs:
            return  # the next `complete` checks again
        for entry in self._uncertain(link):
            entry.link = link
            await self._send_on(link, {"type": "message", "content": entry.content})
        await self._flush(link)

    # Receiving ---------------------------------------------------------------------------------

    async def next_event(self) -> dict[str, Any]:
        """The next server message; raises ConnectionError once the client is closed for good.

        A dropped connection the client recovers from is not an end: replayed messages follow
        (each delivered once), preceded by the new connection's `ready`.
        """
        event = await self._events.get()
        if event is _END:
            self._events.put_nowait(_END)
            raise ConnectionError(f"connection closed with code {self.close_code}")
        return dict(event)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.next_event()
            except ConnectionError:
                return

    async def wait_for(self, kind: str) -> dict[str, Any]:
        while True:
            event = await self.next_event()
            if event["type"] == kind:
                return event

    async def run(self, text: str) -> RunResult:
        """Send a message and collect its run until `complete`, across reconnects.

        The text is the final attempt's: a step the server made again (`step_retry`) counts once.
        """
        entry = await self._submit(text)
        return await self._collect(entry)

    async def collect_run(self) -> RunResult:
        """Collect the next run to start, until its `complete`."""
        return await self._collect(None)

    async def _collect(self, entry: _Outgoing | None) -> RunResult:
        events: list[dict[str, Any]] = []
        run_id = ""
        parts: list[str] = []
        step_start = 0
        while True:
            event = await self.next_event()
            events.append(event)
            kind = event["type"]
            if kind == "error" and event.get("code") == "session_expired":
                raise ConversationReset("the server no longer had the session; it starts afresh")
            if kind == "snapshot":
                if not run_id and entry is not None and entry.run_id is not None:
                    run_id = entry.run_id
                if not run_id:
                    continue
                current = event.get("run") or {}
                if current.get("run_id") == run_id:
                    parts = [str(current.get("content", ""))]
                    step_start = len(parts)
                    continue
                said = [
                    str(turn.get("content", ""))
                    for turn in event.get("turns", [])
                    if turn.get("run_id") == run_id and turn.get("role") == "assistant"
                ]
                return RunResult(run_id, "".join(said), "unknown", events)
            if kind == "run_started" and not run_id:
                if entry is None or entry.run_id == event["run_id"]:
                    run_id = event["run_id"]
                continue
            if not run_id or event.get("run_id") != run_id:
                continue
            if kind == "token":
                parts.append(event["content"])
            elif kind in ("tool_request", "tool_result"):
                step_start = len(parts)
            elif kind == "step_retry":
                del parts[step_start:]
            elif kind == "complete":
                usage = event.get("usage")
                return RunResult(run_id, "".join(parts), event["reason"], events, usage)

    async def _dispatch(self, link: _Link, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "error" and event.get("code") == "session_expired":
            # The fresh session numbers from 1 again, this error included.
            await self._reset_conversation()
        seq = event.get("seq")
        # Frames a connection sends on its own (before hello, or its headers) are numbered 0:
        # they belong to no session's sequence.
        if kind not in ("ready", "snapshot") and isinstance(seq, int) and seq > 0:
            if seq <= self._last_seq:
                self.duplicates += 1
                return
            self._last_seq = seq
        if kind == "ready":
            await self._on_ready(link, event)
        elif kind == "snapshot":
            self._on_snapshot(event)
        elif kind == "ping":
            if self.answer_pings:
                await self._send_on(link, {"type": "pong", "nonce": event.get("nonce")})
        elif kind == "pong" and link.sync_nonce and event.get("nonce") == link.sync_nonce:
            await self._on_sync(link)
            return
        elif kind == "approval_request":
            await self._on_approval_request(link, event)
        elif kind == "tool_request":
            # Approved: the question is settled, the call goes on as any other.
            self._end_approval(str(event.get("id")))
            await self._on_request(link, event)
        elif kind == "tool_cancel":
            self._end_call(str(event.get("id")), cancel=True)
        elif kind == "tool_result":
            self._end_approval(str(event.get("id")))
            self._end_call(str(event.get("id")), cancel=False)
        elif kind == "error" and event.get("id") is not None:
            self._on_error_about(str(event.get("id")), event.get("code"))
        elif kind == "run_started":
            self._on_run_started(event)
        elif kind == "complete":
            self._active_runs.discard(str(event.get("run_id")))
            await self._reconcile(link)
        elif kind == "error" and event.get("code") == "queue_full":
            unconfirmed = [e for e in self._outgoing if e.run_id is None]
            if unconfirmed:
                self._outgoing.remove(unconfirmed[-1])
        self._events.put_nowait(event)

    async def _on_ready(self, link: _Link, event: dict[str, Any]) -> None:
        self.ready = event
        token = event.get("resume_token")
        if isinstance(token, str):
            self._resume_token = token
        session_id = event.get("session_id")
        if isinstance(session_id, str):
            # Connected to `/ws/agent`, the server named the session: come back to that name,
            # or a reconnect would open a new session.
            self.url = session_url(self.url, session_id)
        limits = event.get("limits") or {}
        interval = limits.get("heartbeat_interval_ms")
        if isinstance(interval, int | float) and interval > 0:
            timeout = limits.get("heartbeat_timeout_ms", interval)
            self._dead_after_s = (interval + timeout) / 1000
        link.ready = True
        self._failures = 0
        resumed = event.get("resumed") or {}
        # Without `resumed` this is a new session (or a server that does not resume): the calls
        # of any earlier connection are over.
        await self._settle(link, set(resumed.get("pending_calls", [])))
        await self._settle_approvals(link, set(resumed.get("pending_approvals", [])))
        self._pulse()
        await self._reconcile(link)

    def _on_snapshot(self, event: dict[str, Any]) -> None:
        last_seq = event.get("last_seq")
        if isinstance(last_seq, int):
            self._last_seq = last_seq
        current = event.get("run") or {}
        self._active_runs = {str(current["run_id"])} if current.get("run_id") else set()
        for turn in event.get("turns", []):
            run_id = turn.get("run_id")
            if turn.get("role") != "user" or not run_id or run_id in self._known_runs:
                continue
            self._known_runs.add(run_id)
            self._confirm(str(turn.get("content", "")), run_id)

    def _on_run_started(self, event: dict[str, Any]) -> None:
        run_id = str(event.get("run_id"))
        self._active_runs.add(run_id)
        self._known_runs.add(run_id)
        self._confirm(str(event.get("content", "")), run_id)

    def _confirm(self, content: str, run_id: str) -> None:
        for entry in self._outgoing:
            if entry.run_id is None and entry.link is not None and entry.content == content:
                entry.run_id = run_id
                self._outgoing.remove(entry)
                return

    async def _reset_conversation(self) -> None:
        self._last_seq = 0
        self._resume_token = None
        self._outgoing.clear()
        self._active_runs.clear()
        self.conversation_resets += 1
        if self.on_conversation_reset is not None:
            outcome = self.on_conversation_reset()
            if inspect.isawaitable(outcome):
                await outcome

    # Approvals, the receiving side ---------------------------------------------------------------

    async def _on_approval_request(self, link: _Link, event: dict[str, Any]) -> None:
        call_id = str(event.get("id"))
        state = self._approvals.get(call_id)
        if state == "answered":
            # A redelivery: the answer goes again unless `ready` already sent it on this link.
            if call_id not in link.approvals_sent:
                link.approvals_sent.add(call_id)
                self.approvals_resent += 1
                await self._send_on(link, self._approval_answers[call_id])
            return
        if state == "waiting":
            return  # the approver or the app has it already
        request = self._request_of(event)
        self._approvals[call_id] = "waiting"
        self._approval_requests[call_id] = request
        self._offer(request)

    def _request_of(self, event: dict[str, Any]) -> ApprovalRequest:
        arguments = event.get("arguments")
        return ApprovalRequest(
            id=str(event.get("id")),
            run_id=str(event.get("run_id")),
            name=str(event.get("name")),
            arguments=dict(arguments) if isinstance(arguments, dict) else {},
            reason=str(event.get("reason", "")),
            expires_at=int(event.get("expires_at") or 0),
            redelivered=bool(event.get("redelivered")),
            _client=self,
        )

    def _offer(self, request: ApprovalRequest) -> None:
        if self._approver is None:
            self._approval_queue.put_nowait(request)
            return
        task = asyncio.create_task(self._decide(request))
        self._approver_tasks[request.id] = task
        task.add_done_callback(lambda _t: self._approver_tasks.pop(request.id, None))

    async def _decide(self, request: ApprovalRequest) -> None:
        approver = self._approver
        assert approver is not None
        try:
            answer = approver(request)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            # Fail closed: a broken approver must not leave the call to run or to hang.
            answer = Approval.deny(f"the approver failed: {type(exc).__name__}: {exc}")
        if isinstance(answer, bool):
            answer = Approval.approve() if answer else Approval.deny()
        if self._approvals.get(request.id) != "waiting":
            return  # cancelled, expired or answered by the app meanwhile
        await self.answer_approval(request.id, answer)

    async def _settle_approvals(self, link: _Link, pending: set[str]) -> None:
        """After `ready`: answers the server still waits for go again; other approvals are over."""
        for call_id in list(self._approvals):
            if call_id not in pending:
                self._end_approval(call_id)
            elif call_id in self._approval_answers and call_id not in link.approvals_sent:
                link.approvals_sent.add(call_id)
                self.approvals_resent += 1
                await self._send_on(link, self._approval_answers[call_id])

    def _on_error_about(self, call_id: str, code: object) -> None:
        if self._approvals.get(call_id) != "answered":
            return
        if code == "invalid_arguments":
            # The edited arguments were refused and the request stays open. It goes to the
            # app's queue, approver or not: running the approver again could repeat the same
            # edit for ever, so a person (or the app) answers it once more.
            self._approval_answers.pop(call_id, None)
            self._approvals[call_id] = "waiting"
            request = self._approval_requests.get(call_id)
            if request is not None:
                self._approval_queue.put_nowait(request)
        elif code == "unknown_approval":
            self._end_approval(call_id)  # decided, expired or cancelled already

    def _end_approval(self, call_id: str) -> None:
        if self._approvals.pop(call_id, None) is None:
            return
        self._approval_answers.pop(call_id, None)
        self._approval_requests.pop(call_id, None)
        task = self._approver_tasks.pop(call_id, None)
        if task is not None:
            task.cancel()

    # Tool calls --------------------------------------------------------------------------------

    async def _settle(self, link: _Link, pending: set[str]) -> None:
        """After `ready`: results the server still waits for go again; every other call is over."""
        for call_id, response in list(self._kept.items()):
            if call_id in pending:
                await self._deliver(link, call_id, response)
            else:
                self._end_call(call_id, cancel=False)
        for call_id in list(self._handlers):
            if call_id not in pending:
                self._end_call(call_id, cancel=True)

    async def _deliver(self, link: _Link, call_id: str, response: dict[str, Any]) -> None:
        if call_id in link.answered or not link.ready:
            return
        if self._answered_before(call_id):
            self.results_resent += 1
        link.answered.add(call_id)
        self._sent_once.add(call_id)
        await self._send_on(link, response)

    def _answered_before(self, call_id: str) -> bool:
        return call_id in self._sent_once

    async def _on_request(self, link: _Link, request: dict[str, Any]) -> None:
        call_id = request["id"]
        state = self._calls.get(call_id)
        if state == "kept":
            await self._deliver(link, call_id, self._kept[call_id])
        elif state is None:
            self._calls[call_id] = "running"
            task = asyncio.create_task(self._answer(request))
            self._handlers[call_id] = task
            task.add_done_callback(lambda _t: self._handlers.pop(call_id, None))
        # "running": its result goes out when it is ready; "ended": the server has moved on.

    def _end_call(self, call_id: str, *, cancel: bool) -> None:
        if call_id not in self._calls:
            return
        self._calls[call_id] = "ended"
        self._kept.pop(call_id, None)
        self._sent_once.discard(call_id)
        task = self._handlers.pop(call_id, None) if cancel else None
        if task is not None:
            task.cancel()
        if len(self._calls) > _MAX_ENDED_CALLS:
            ended = [cid for cid, state in self._calls.items() if state == "ended"]
            for cid in ended[: len(self._calls) - _MAX_ENDED_CALLS]:
                del self._calls[cid]

    async def _answer(self, request: dict[str, Any]) -> None:
        call_id = request["id"]
        tool = self._tools.get(request["name"])
        response: dict[str, Any] = {"type": "tool_response", "id": call_id}
        try:
            if tool is None:
                raise LookupError(f"this client has no tool named {request['name']!r}")
            arguments = dict(request.get("arguments") or {})
            if tool.context_param is not None:
                arguments[tool.context_param] = ToolContext(call_id, self)
            if inspect.iscoroutinefunction(tool.handler):
                value = await tool.handler(**arguments)
            else:
                value = await asyncio.to_thread(tool.handler, **arguments)
            response.update(status="ok", result=_JSON.dump_python(value, mode="json"))
        except ToolDenied as exc:
            response.update(status="denied", error={"message": str(exc) or "denied by the user"})
        except Exception as exc:
            response.update(status="error", error={"message": f"{type(exc).__name__}: {exc}"})
        if self._calls.get(call_id) != "running":
            return  # the call ended while the handler ran: nobody is waiting for this result
        self._calls[call_id] = "kept"
        self._kept[call_id] = response
        link = self._link
        if link is not None:
            await self._deliver(link, call_id, response)


def session_url(url: str, session_id: str) -> str:
    """`url` naming `session_id`: `.../ws/agent` gains it; a URL that names one keeps it."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if path.endswith("/ws/agent"):
        path = f"{path}/{quote(session_id, safe='')}"
    return urlunsplit(parts._replace(path=path))
