"""An asyncio client: register Python functions as tools, send messages, read the stream."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import websockets
from pydantic import TypeAdapter

from bridge_client.schema import context_parameter, parameters_schema

__all__ = ["BridgeClient", "RunResult", "ToolContext", "ToolDenied"]

F = TypeVar("F", bound=Callable[..., Any])
_JSON = TypeAdapter(Any)
_END = object()


class ToolDenied(Exception):
    """Raise from a handler when the user refused: the call ends as `denied`, not `error`."""


@dataclass
class ToolContext:
    """Given to a handler that declares a parameter of this type."""

    call_id: str
    _client: BridgeClient

    async def progress(self, progress: float | None = None, message: str | None = None) -> None:
        """Tell the server the call is alive: it pushes the deadline out (up to a hard cap)."""
        payload: dict[str, Any] = {"type": "tool_progress", "id": self.call_id}
        if progress is not None:
            payload["progress"] = progress
        if message is not None:
            payload["message"] = message
        await self._client.send_json(payload)


@dataclass
class _Tool:
    definition: dict[str, Any]
    handler: Callable[..., Any]
    context_param: str | None


@dataclass
class RunResult:
    run_id: str
    text: str
    reason: str
    events: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None


class BridgeClient:
    """`async with BridgeClient(url) as client:` connects, says hello and registers the tools."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        client_name: str = "bridge_client/python",
        answer_pings: bool = True,
        max_size: int = 16 * 1024 * 1024,
    ) -> None:
        self.url = url
        self._token = token
        self._client_name = client_name
        self.answer_pings = answer_pings
        self._max_size = max_size
        self._tools: dict[str, _Tool] = {}
        self._ws: Any = None
        self._events: asyncio.Queue[Any] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._handlers: dict[str, asyncio.Task[None]] = {}
        self.ready: dict[str, Any] = {}
        self.close_code: int | None = None

    # Tools -------------------------------------------------------------------------------------

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
        output_schema: dict[str, Any] | None = None,
    ) -> Any:
        """Register a handler (sync or async); its JSON Schema comes from its type hints."""

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
            ):
                if value is not None:
                    definition[key] = value
            self._tools[definition["name"]] = _Tool(definition, fn, ctx)
            return fn

        return register(func) if func is not None else register

    @property
    def definitions(self) -> list[dict[str, Any]]:
        return [t.definition for t in self._tools.values()]

    # Connection --------------------------------------------------------------------------------

    async def __aenter__(self) -> BridgeClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, *, hello: bool = True) -> None:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else None
        self._ws = await websockets.connect(
            self.url, additional_headers=headers, max_size=self._max_size, compression=None
        )
        self._reader = asyncio.create_task(self._read())
        if hello:
            await self.send_json(
                {
                    "type": "hello",
                    "protocol": 1,
                    "tools": self.definitions,
                    "client": self._client_name,
                }
            )
            self.ready = await self.wait_for("ready")

    async def close(self) -> None:
        for task in self._handlers.values():
            task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    # Sending -----------------------------------------------------------------------------------

    async def send_json(self, payload: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(payload))

    async def send_raw(self, frame: str | bytes) -> None:
        """Send a frame as is (for testing a server's handling of bad input)."""
        await self._ws.send(frame)

    async def send(self, text: str) -> None:
        await self.send_json({"type": "message", "content": text})

    async def stop(self) -> None:
        await self.send_json({"type": "stop"})

    # Receiving ---------------------------------------------------------------------------------

    async def next_event(self) -> dict[str, Any]:
        """The next server message; raises ConnectionError once the socket has closed."""
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
        """Send a message and collect its run until `complete`."""
        await self.send(text)
        return await self.collect_run()

    async def collect_run(self) -> RunResult:
        events: list[dict[str, Any]] = []
        run_id = ""
        while True:
            event = await self.next_event()
            events.append(event)
            if event["type"] == "run_started" and not run_id:
                run_id = event["run_id"]
            if event["type"] == "complete" and event["run_id"] == run_id:
                text = "".join(e["content"] for e in events if e["type"] == "token")
                return RunResult(run_id, text, event["reason"], events, event.get("usage"))

    async def _read(self) -> None:
        try:
            async for frame in self._ws:
                event = json.loads(frame)
                kind = event.get("type")
                if kind == "ping" and self.answer_pings:
                    await self.send_json({"type": "pong", "nonce": event.get("nonce")})
                elif kind == "tool_request":
                    self._start_handler(event)
                elif kind == "tool_cancel":
                    task = self._handlers.pop(event["id"], None)
                    if task is not None:
                        task.cancel()
                self._events.put_nowait(event)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self._events.put_nowait(_END)

    def _start_handler(self, request: dict[str, Any]) -> None:
        task = asyncio.create_task(self._answer(request))
        self._handlers[request["id"]] = task
        task.add_done_callback(lambda _t: self._handlers.pop(request["id"], None))

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
        try:
            await self.send_json(response)
        except websockets.ConnectionClosed:
            pass
