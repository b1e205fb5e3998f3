"""Drive a session's runtime in memory: no sockets, no server, the real agent loop.

`memory_runtime` builds a `SessionRuntime` the way the server does; `MemoryClient` plays the part
of a connection. It attaches to the runtime's outbox as its reader, takes frames only when asked
(so a client that is never read stands for a stalled one), sends client messages through the
same parser and the same `handle` a connection uses, answers tool requests, and can drop and
come back with a resume::

    model = ScriptedModel([[call("echo", {"text": "hi"})], ["done"]])
    runtime = memory_runtime(model)
    client = MemoryClient(runtime, handlers={"echo": lambda args: args})
    client.hello([{"name": "echo", "parameters": {"type": "object"}}])
    await client.say("hello")
    complete = await client.wait_for("complete")   # answers the echo call on the way

Every wait is bounded by `timeout_s`; nothing here sleeps.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bridge.agent.runtime import SessionRuntime
from bridge.agent.server_tools import ServerTools
from bridge.approvals import ApprovalPolicy
from bridge.errors import ProtocolError
from bridge.limits import ConnectionLimits, SessionLimits, wire_limits
from bridge.models.base import Model
from bridge.protocol import ErrorMessage, ResumeRequest
from bridge.session import ResumePlan, Session
from bridge.wire import parse_client_message

__all__ = ["Frame", "Handler", "MemoryClient", "ResumeDenied", "memory_runtime"]

# A server frame as the client reads it: the decoded JSON object.
Frame = dict[str, Any]
# Answers a tool request: gets the arguments, returns the `ok` result (sync or async).
Handler = Callable[[dict[str, Any]], Any]


class ResumeDenied(Exception):
    """The resume token did not match: the server would answer `resume_denied` and close."""


def memory_runtime(
    model: Model,
    *,
    session_id: str = "memory",
    limits: SessionLimits | None = None,
    queue_size: int = 256,
    server_tools: ServerTools | None = None,
    clock: Callable[[], float] = time.time,
    approval: ApprovalPolicy | None = None,
) -> SessionRuntime:
    """A runtime wired as the server wires one (wall clock for call deadlines by default)."""
    limits = limits or SessionLimits()
    tools = server_tools or ServerTools(limits.tools)
    session = Session(session_id, clock=clock, limits=limits, server_tools=tools.specs)
    return SessionRuntime(
        session,
        model,
        limits=wire_limits(limits, ConnectionLimits(send_queue_size=queue_size)),
        queue_size=queue_size,
        server_tools=tools,
        approval=approval,
    )


class MemoryClient:
    """One client of a runtime: reads its frames on demand, answers its tool requests.

    `frames` holds every frame taken, in order; `headers` holds what a connection sends before
    the session's own traffic (`ready`, then `snapshot` after a gap). Tool requests whose name
    has a handler are answered as they are read, once per call id: a request seen again (a
    replay or a redelivery) does not run the handler twice; `handled` counts the runs.
    """

    def __init__(
        self,
        runtime: SessionRuntime,
        *,
        handlers: Mapping[str, Handler] | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.runtime = runtime
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self.timeout_s = timeout_s
        self.frames: list[Frame] = []
        self.headers: list[Frame] = []
        # Per call id: how many times a handler ran (a test asserts it is never more than one).
        self.handled: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._attached = False
        # One callable for attach and detach alike: the outbox recognises its reader by
        # identity, and every `self._wake.set` access would build a new bound method.
        self._notify = self._wake.set

    # The connection's side -------------------------------------------------------------------

    @property
    def attached(self) -> bool:
        return self._attached

    @property
    def last_seq(self) -> int:
        """The highest `seq` taken so far (what a resume names)."""
        return max((f["seq"] for f in self.frames if "seq" in f), default=0)

    def hello(self, tools: list[dict[str, Any]] | None = None) -> Frame:
        """A fresh start (no resume): attach and return `ready`."""
        ready = self.runtime.greet(list(tools or []), self._notify)
        self._attached = True
        return self._header(ready)

    def resume(
        self,
        last_seq: int | None = None,
        *,
        token: str | None = None,
        tools: list[dict[str, Any]] | None = None,
    ) -> tuple[Frame, Frame | None]:
        """Come back after a drop: `ready` (with `resumed`) and the `snapshot` if there was a gap.

        `last_seq` defaults to the last frame this client took, `token` to the session's own.
        """
        request = ResumeRequest(
            token=self.runtime.session.resume_token if token is None else token,
            last_seq=self.last_seq if last_seq is None else last_seq,
        )
        plan = self.runtime.session.resume_plan(request)
        if plan is ResumePlan.DENIED:
            raise ResumeDenied("the resume token does not match this session")
        ready, snapshot = self.runtime.resume(
            list(tools or []), plan, request.last_seq, self._notify
        )
        self._attached = True
        return self._header(ready), None if snapshot is None else self._header(snapshot)

    def detach(self) -> None:
        """The connection drops: the session is held and the run goes on without a reader."""
        self.runtime.outbox.detach(self._notify)
        self._attached = False

    def _header(self, message: Any) -> Frame:
        frame: Frame = json.loads(message.model_dump_json(exclude_none=True))
        self.headers.append(frame)
        return frame

    # Sending ---------------------------------------------------------------------------------

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one client message as JSON; a refused one is answered with `error`, as on a
        connection."""
        try:
            parsed = parse_client_message(json.dumps(message))
            await self.runtime.handle(parsed)
        except ProtocolError as exc:
            self.runtime.outbox.post(ErrorMessage(code=exc.code, message=exc.message))

    async def say(self, text: str) -> None:
        await self.send({"type": "message", "content": text})

    async def stop(self) -> None:
        await self.send({"type": "stop"})

    async def answer(
        self,
        call_id: str,
        result: Any = None,
        *,
        status: str = "ok",
        error: str | None = None,
    ) -> None:
        message: dict[str, Any] = {"type": "tool_response", "id": call_id, "status": status}
        if status == "ok":
            message["result"] = result
        if error is not None:
            message["error"] = {"message": error}
        await self.send(message)

    # Reading ---------------------------------------------------------------------------------

    async def pump(self) -> list[Frame]:
        """Take every frame ready now, answering tool requests; return what was taken."""
        taken: list[Frame] = []
        while True:
            text = self.runtime.outbox.take() if self._attached else None
            if text is None:
                return taken
            frame: Frame = json.loads(text)
            self.frames.append(frame)
            taken.append(frame)
            if frame["type"] == "tool_request":
                await self._on_request(frame)

    async def wait_for(
        self,
        match: str | Callable[[Frame], bool],
        *,
        timeout_s: float | None = None,
    ) -> Frame:
        """Read until a frame of that type (or matching the predicate) arrives; return it.

        Only frames taken by this call are searched, so waiting twice for `complete` waits for
        the next one.
        """
        test = (lambda f: f["type"] == match) if isinstance(match, str) else match
        async with asyncio.timeout(self.timeout_s if timeout_s is None else timeout_s):
            while True:
                self._wake.clear()
                for frame in await self.pump():
                    if test(frame):
                        return frame
                await self._wake.wait()

    async def settle(self, *, timeout_s: float | None = None) -> None:
        """Wait until the session has no run and nothing is left to read."""
        async with asyncio.timeout(self.timeout_s if timeout_s is None else timeout_s):
            while True:
                self._wake.clear()
                await self.pump()
                if not self.runtime.session.running and self.runtime.outbox.log.backlog == 0:
                    return
                # A run ends with `complete`, which notifies; the last pump took everything else.
                await self._wake.wait()

    async def _on_request(self, frame: Frame) -> None:
        call_id = frame["id"]
        handler = self.handlers.get(frame["name"])
        if handler is None or call_id in self.handled:
            return
        self.handled[call_id] = self.handled.get(call_id, 0) + 1
        try:
            value = handler(frame["arguments"])
            if inspect.isawaitable(value):
                value = await _awaited(value)
        except Exception as exc:  # the handler's failure is the tool's error, as in the clients
            await self.answer(call_id, status="error", error=f"{type(exc).__name__}: {exc}")
            return
        await self.answer(call_id, value)


async def _awaited(value: Awaitable[Any]) -> Any:
    return await value
