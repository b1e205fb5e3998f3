"""One accepted WebSocket: a reader, a writer, and a heartbeat.

The connection owns the socket and nothing else. Until `hello` it belongs to no session and
answers on its own (those frames carry no `seq`); the hub then attaches it to a session, and the
writer sends the session's outbound log from the connection's cursor. Whoever decides the
connection is over calls `finish(code)`; `run` then tears down in one place, flushing what is
queued before the close frame. The session itself goes on: leaving is the hub's business.

What a client can cost is bounded here: every frame it sends is paid for from a frame bucket and
a byte bucket (`bridge.ratelimit`); what waits to be sent is bounded in frames and bytes, before
hello in the connection's own queue and after it in the session's window, and a client that lets
either fill is not reading and is closed `1008`. On the way out the connection lets go of the
session and its queue, so nothing it held waits for the garbage collector.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import secrets
from collections import deque
from collections.abc import Awaitable, Callable

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from bridge.agent.runtime import SessionRuntime
from bridge.errors import CloseCode, ConnectionRefused, ErrorCode, ProtocolError
from bridge.limits import ConnectionLimits
from bridge.protocol import (
    ByeMessage,
    ErrorMessage,
    HelloMessage,
    PingMessage,
    PongMessage,
    ServerPingMessage,
    ServerPongMessage,
)
from bridge.ratelimit import FloodGuard, Verdict
from bridge.server.auth import ANONYMOUS, Principal
from bridge.wire import dump_server_message, parse_client_message

__all__ = ["Connection", "Greeter"]

log = logging.getLogger(__name__)
_connection_ids = itertools.count(1)

_FLUSH_TIMEOUT_S = 2.0
# An error message quotes what it refuses (an unknown `type`, say): quoted this far, no further.
_MAX_ERROR_CHARS = 256
_NOT_READING = "the client is not reading its messages"

# Turns a hello into an attached runtime plus the header frames (ready, snapshot) to send first.
Greeter = Callable[["Connection", HelloMessage], Awaitable[tuple[SessionRuntime, list[BaseModel]]]]


class Connection:
    def __init__(
        self,
        websocket: WebSocket,
        session_id: str,
        limits: ConnectionLimits,
        greet: Greeter,
        leave: Callable[[Connection, bool], Awaitable[None]],
        principal: Principal = ANONYMOUS,
        *,
        flood: FloodGuard | None = None,
    ) -> None:
        self._ws = websocket
        self.session_id = session_id
        self.principal = principal
        self._limits = limits
        self._greet = greet
        self._leave = leave
        self.runtime: SessionRuntime | None = None
        # Frames of this connection alone: answers before hello, then ready and snapshot.
        self._direct: deque[str] = deque()
        self._direct_bytes = 0
        # The address gate hands over the buckets a reconnecting flooder left in debt; a
        # connection made without it starts with a full burst.
        self._flood = flood or FloodGuard(
            frames_per_s=limits.frames_per_s,
            burst_frames=limits.burst_frames,
            bytes_per_s=limits.bytes_per_s,
            burst_bytes=limits.burst_bytes,
        )
        # The log limiter's key (bridge/server/logs.py): lines are limited per connection, so
        # one client repeating a bad frame cannot crowd out another session's lines.
        self._log = {"conn": next(_connection_ids)}
        # One bound method for the connection's life: the outbox recognises its reader by
        # identity when it detaches, and `self.notify` would otherwise be a new object each time.
        self.notify: Callable[[], None] = self._notify
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._pong = asyncio.Event()
        self._greeted = asyncio.Event()
        self._finished = asyncio.Event()
        self._closed = asyncio.Event()
        self._close_code: int | None = None
        self._close_reason = ""
        self._flush = True
        self._said_bye = False

    def _notify(self) -> None:
        """The session has frames for this connection."""
        self._wake.set()
        attached = self.runtime
        if attached is not None and attached.outbox.log.overflowed:
            self.finish(CloseCode.POLICY, _NOT_READING, flush=False)

    def send_direct(self, message: BaseModel) -> None:
        """Queue a frame of this connection alone (ready, snapshot): never refused."""
        frame = dump_server_message(message)
        self._direct.append(frame)
        self._direct_bytes += len(frame)
        self._wake.set()

    def _post(self, message: BaseModel) -> None:
        if self.runtime is not None:
            self.runtime.outbox.post(message)
            return
        limits = self._limits
        if (
            len(self._direct) >= limits.send_queue_size
            or self._direct_bytes >= limits.send_queue_bytes
        ):
            self.finish(CloseCode.POLICY, _NOT_READING, flush=False)
            return
        self.send_direct(message)

    # Lifecycle ---------------------------------------------------------------------------------

    def finish(self, code: int | None, reason: str = "", *, flush: bool = True) -> None:
        """End the connection; `None` means the peer is gone and no close frame is sent.

        `flush=False` skips sending what is queued: the peer is not reading it anyway."""
        if not self._finished.is_set():
            self._close_code, self._close_reason = code, reason
            self._flush = flush
            self._finished.set()

    async def wait_closed(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._closed.wait()
        except TimeoutError:
            log.warning(
                "connection for session %s did not close in time", self.session_id, extra=self._log
            )

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        workers = [asyncio.create_task(self._read()), asyncio.create_task(self._watch())]
        try:
            await self._finished.wait()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self._close_socket(writer)
            try:
                await self._leave(self, self._said_bye)
            finally:
                self._release()

    def _release(self) -> None:
        # The session outlives the connection; the connection must not keep the session's
        # objects (or its own unsent frames) alive for as long as something still holds it.
        self.runtime = None
        self._direct.clear()
        self._direct_bytes = 0

    async def _close_socket(self, writer: asyncio.Task[None]) -> None:
        if self._close_code is not None and self._flush and not writer.done():
            self._drained.clear()
            self._wake.set()
            try:
                async with asyncio.timeout(_FLUSH_TIMEOUT_S):
                    await self._drained.wait()
            except TimeoutError:
                log.info(
                    "session %s: closed before everything queued was sent",
                    self.session_id,
                    extra=self._log,
                )
        self._closed.set()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        if self._close_code is not None and self._ws.client_state is WebSocketState.CONNECTED:
            # Under a server without the bridge's transport guards, a close waits for a peer
            # that does not read; the bound keeps this connection from waiting with it.
            try:
                async with asyncio.timeout(self._limits.close_timeout_s):
                    await self._ws.close(self._close_code, self._close_reason[:120])
            except (RuntimeError, OSError, WebSocketDisconnect, TimeoutError):
                pass

    # Tasks -------------------------------------------------------------------------------------

    def _next_frame(self) -> str | None:
        if self._direct:
            direct = self._direct.popleft()
            self._direct_bytes -= len(direct)
            return direct
        runtime = self.runtime
        if runtime is None:
            return None
        frame = runtime.outbox.take()
        if runtime.outbox.log.overflowed:
            self.finish(CloseCode.POLICY, _NOT_READING, flush=False)
        return frame

    async def _write(self) -> None:
        try:
            while True:
                frame = self._next_frame()
                if frame is None:
                    self._drained.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                runtime = self.runtime
                log_state = runtime.outbox.log if runtime is not None else None
                if runtime is not None and runtime.stores and log_state is not None:
                    # In a cluster a frame leaves only once the state that made it is stored,
                    # so a worker taking the session over never reuses a seq the client saw.
                    await runtime.stored_through(log_state.cursor or 0)
                if log_state is not None:
                    log_state.reader_busy = True
                try:
                    await self._ws.send_text(frame)
                finally:
                    if log_state is not None:
                        log_state.reader_busy = False
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.finish(None)
        except Exception:
            log.exception(
                "session %s: writer failed; closing with 1011", self.session_id, extra=self._log
            )
            self.finish(CloseCode.INTERNAL, "internal error")

    async def _read(self) -> None:
        try:
            while True:
                event = await self._ws.receive()
                if event["type"] == "websocket.disconnect":
                    self.finish(None)
                    return
                text = event.get("text")
                if self._admit(text if text is not None else event.get("bytes")):
                    await self._on_frame(text)
        except ConnectionRefused as exc:
            log.info("closing session %s: %s", self.session_id, exc.message, extra=self._log)
            if exc.tell_client:
                self._post(ErrorMessage(code=exc.code, message=exc.message))
            self.finish(exc.close_code, exc.message)
        except (WebSocketDisconnect, OSError):
            self.finish(None)
        except Exception:
            log.exception(
                "session %s: unexpected error; closing with 1011", self.session_id, extra=self._log
            )
            self.finish(CloseCode.INTERNAL, "internal error")

    def _admit(self, data: str | bytes | None) -> bool:
        """Pay for a frame from the buckets; False when it is refused unread."""
        if data is None:
            size = 0
        elif isinstance(data, bytes) or data.isascii():
            size = len(data)
        else:
            size = len(data.encode("utf-8", "surrogatepass"))
        verdict = self._flood.admit(size)
        if verdict is Verdict.ADMIT:
            return True
        limits = self._limits
        if verdict is Verdict.CLOSE:
            # The reason says when the debt is paid: a client that waits that long is let in
            # again from this address (bridge/ratelimit.py carries the debt across reconnects).
            raise ConnectionRefused(
                f"kept sending past the rate limit; retry in {math.ceil(self._flood.owed_s())} s",
                close_code=CloseCode.TOO_MANY,
            )
        if verdict is Verdict.REFUSE_AND_TELL:
            self._post(
                ErrorMessage(
                    code=ErrorCode.RATE_LIMITED,
                    message=(
                        f"more than {limits.frames_per_s:g} frames or {limits.bytes_per_s:.0f} "
                        "bytes a second: frames are dropped until the rate falls, and the "
                        "connection is closed if it does not"
                    ),
                )
            )
        return False

    async def _on_frame(self, text: str | None) -> None:
        if text is None:
            self._post(
                ErrorMessage(
                    code=ErrorCode.BINARY_NOT_SUPPORTED,
                    message="binary frames are not part of the protocol; send JSON text",
                )
            )
            return
        limit = self._limits.max_message_bytes
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            raise ConnectionRefused(
                f"message is larger than {limit} bytes", close_code=CloseCode.TOO_BIG
            )
        try:
            message = parse_client_message(text)
            if isinstance(message, PingMessage):
                self._post(ServerPongMessage(nonce=message.nonce))
            elif isinstance(message, PongMessage):
                self._pong.set()
            elif isinstance(message, HelloMessage):
                if self.runtime is not None:
                    raise ProtocolError(
                        "hello was already received", code=ErrorCode.ALREADY_GREETED
                    )
                runtime, headers = await self._greet(self, message)
                for header in headers:
                    self.send_direct(header)
                self.runtime = runtime
                self._greeted.set()
            elif self.runtime is None:
                raise ProtocolError(
                    f"send hello before {message.type}", code=ErrorCode.HELLO_REQUIRED
                )
            elif isinstance(message, ByeMessage):
                self._said_bye = True
                self.finish(CloseCode.NORMAL, "bye")
            else:
                await self.runtime.handle(message)
        except ProtocolError as exc:
            text = exc.message
            if len(text) > _MAX_ERROR_CHARS:
                text = text[: _MAX_ERROR_CHARS - 1] + "…"
            self._post(ErrorMessage(code=exc.code, message=text))
        attached = self.runtime
        if attached is not None and attached.outbox.log.overflowed:
            self.finish(CloseCode.POLICY, _NOT_READING, flush=False)

    async def _watch(self) -> None:
        """Hello deadline first, then the heartbeat: a ping, and close 4408 without a pong."""
        try:
            async with asyncio.timeout(self._limits.hello_timeout_s):
                await self._greeted.wait()
        except TimeoutError:
            self.finish(CloseCode.POLICY, "no hello in time")
            return
        while True:
            await asyncio.sleep(self._limits.heartbeat_interval_s)
            self._pong.clear()
            self._post(ServerPingMessage(nonce=secrets.token_hex(4)))
            try:
                async with asyncio.timeout(self._limits.heartbeat_timeout_s):
                    await self._pong.wait()
            except TimeoutError:
                self.finish(CloseCode.HEARTBEAT_TIMEOUT, "no pong in time")
                return
