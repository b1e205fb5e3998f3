"""An OpenAI-compatible HTTP server for tests, on asyncio streams, on a free loopback port.

    async with OpenAIServer(Reply(["Hel", "lo"]), Fail(429)) as server:
        client = AsyncOpenAI(api_key="test", base_url=server.base_url)

It serves `POST /v1/chat/completions` (streamed and not) and `POST /v1/responses` (streamed and
not) from one script, one item per request, in the real wire format. Every request is recorded
in `requests`. When a client hangs up before an answer is finished (noticed while the server
stalls, holds, or writes), `disconnects` counts it and the `disconnected` event is set, so a
test can wait for it with a bound. Past the end of the script, every request gets the reply
"(end of script)".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from bridge.testing.openai_wire import (
    Fail,
    Reply,
    ScriptItem,
    chat_completion,
    chat_stream_frames,
    responses_object,
    responses_stream_frames,
)

__all__ = ["OpenAIServer", "RecordedRequest"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_MAX_HEAD_BYTES = 64 * 1024
_END_OF_SCRIPT = Reply("(end of script)")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def api(self) -> str:
        return "responses" if self.path.endswith("/responses") else "chat"


class _ClientGone(Exception):
    """The client closed the connection before the answer was finished."""


class OpenAIServer:
    """A scripted OpenAI-compatible server; `async with` starts and stops it."""

    def __init__(self, *script: ScriptItem, host: str = "127.0.0.1") -> None:
        self.script: list[ScriptItem] = list(script)
        self.host = host
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._served = 0

    # Lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What to pass as `base_url` to an OpenAI client."""
        return f"http://{self.host}:{self.port}/v1"

    def add(self, *items: ScriptItem) -> None:
        """Append to the script (requests take items in order)."""
        self.script.extend(items)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve_connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> OpenAIServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # HTTP --------------------------------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._serve_request(reader, writer):
                pass
        except (_ClientGone, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Only `close` cancels these tasks; ending quietly keeps asyncio's stream callback
            # from reporting the cancellation as an error.
            pass
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _serve_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection should end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        except asyncio.LimitOverrunError:
            await _send_json(writer, 413, {"error": {"message": "request head too large"}})
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = [*lines[0].split(" ", 2), "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        raw = await _read_body(reader, headers)
        path = target.split("?", 1)[0]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            await _send_json(writer, 400, {"error": {"message": "body is not JSON"}})
            return True
        self.requests.append(RecordedRequest(method, path, headers, body))
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/responses"):
            await _send_json(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        item = self.script.pop(0) if self.script else _END_OF_SCRIPT
        self._served += 1
        if isinstance(item, Fail):
            await _send_json(writer, item.status, item.body(), item.headers)
            return True
        request = body if isinstance(body, dict) else {}
        try:
            return await self._answer(reader, writer, path, request, item)
        except _ClientGone:
            self.disconnects += 1
            self.disconnected.set()
            return False

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        path: str,
        request: dict[str, Any],
        reply: Reply,
    ) -> bool:
        model = str(request.get("model", "test-model"))
        serial = self._served
        chat = path.endswith("/chat/completions")
        if not request.get("stream"):
            if reply.end != "complete":
                # A whole JSON body has no middle to cut or corrupt; every fault is a hang-up.
                await self._misbehave(reader, writer, reply)
                return False
            answer = (
                chat_completion(reply, model, serial)
                if chat
                else responses_object(reply, model, serial)
            )
            await _send_json(writer, 200, answer)
            return True
        if chat:
            options = request.get("stream_options") or {}
            include_usage = bool(isinstance(options, dict) and options.get("include_usage"))
            frames = chat_stream_frames(reply, model, serial, include_usage)
        else:
            frames = responses_stream_frames(reply, model, serial)
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"content-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\n"
            b"transfer-encoding: chunked\r\n" + f"x-request-id: req_{serial}\r\n\r\n".encode()
        )
        await _drain(writer)
        # "incomplete" is a proper ending of its own; the others break in at the cut.
        cut = reply.cut_after if reply.end not in ("complete", "incomplete") else None
        sent_content = 0
        for frame in frames:
            if frame.kind == "closing":
                break
            if frame.kind == "content":
                if sent_content == reply.hold_after:
                    await _until_or_gone(reader, (reply.release or asyncio.Event()).wait())
                if sent_content == cut:
                    break
                sent_content += 1
            await _write_chunk(writer, frame.data)
        if reply.end in ("stall", "drop"):
            await self._misbehave(reader, writer, reply)
            return False
        if reply.end == "malformed":
            await _write_chunk(writer, reply.bad_event)
        closing = [frame for frame in frames if frame.kind == "closing"]
        if reply.end == "truncate":
            closing = closing[: reply.keep_closing]
        for frame in closing:
            await _write_chunk(writer, frame.data)
        await _write_chunk(writer, b"")
        return True

    async def _misbehave(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: Reply
    ) -> None:
        if reply.end == "drop":
            writer.transport.abort()
            return
        await _until_or_gone(reader, asyncio.Event().wait())


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return bytes(body)
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    length = int(headers.get("content-length", "0") or 0)
    return await reader.readexactly(length) if length else b""


async def _until_or_gone(reader: asyncio.StreamReader, waiting: Awaitable[Any]) -> None:
    """Wait for `waiting`, unless the client closes the connection first (then raise)."""
    wait_task = asyncio.ensure_future(waiting)
    # A client that is waiting for our answer sends nothing, so any read that returns means
    # the connection ended: b"" on a clean close, an error on a reset.
    gone_task = asyncio.ensure_future(reader.read(1))
    try:
        done, _ = await asyncio.wait({wait_task, gone_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (wait_task, gone_task):
            task.cancel()
        await asyncio.gather(wait_task, gone_task, return_exceptions=True)
    if gone_task in done:
        raise _ClientGone


async def _drain(writer: asyncio.StreamWriter) -> None:
    try:
        await writer.drain()
    except ConnectionError as exc:
        raise _ClientGone from exc
    if writer.transport.is_closing():
        raise _ClientGone


async def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One HTTP/1.1 chunk, flushed at once so the client sees each event as it is sent."""
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await _drain(writer)


async def _send_json(
    writer: asyncio.StreamWriter,
    status: int,
    body: Any,
    extra_headers: Mapping[str, str] | None = None,
) -> None:
    payload = json.dumps(body).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        "content-type: application/json",
        f"content-length: {len(payload)}",
    ]
    head += [f"{key}: {value}" for key, value in (extra_headers or {}).items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    with contextlib.suppress(ConnectionError):
        await writer.drain()
