"""One accepted WebSocket: a reader, a writer with a bounded queue, and a heartbeat.

The connection owns the socket and nothing else; what a message means is decided by the
runtime. Whoever decides the connection is over calls `finish(code)`; `run` then tears down in
one place, flushing what is queued before the close frame.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from bridge.agent.outbox import Outbox
from bridge.agent.runtime import SessionRuntime
from bridge.errors import CloseCode, ErrorCode, LimitExceeded, ProtocolError
from bridge.protocol import (
    ErrorMessage,
    PingMessage,
    PongMessage,
    ServerPingMessage,
    ServerPongMessage,
    TokenMessage,
    dump_server_message,
    parse_client_message,
)
from bridge.server.settings import BridgeSettings
from bridge.session import Session

__all__ = ["Connection"]

log = logging.getLogger("bridge.server")

_FLUSH_TIMEOUT_S = 2.0
# A coalesced token frame stops growing here, so a slow client's backlog stays bounded.
_COALESCE_MAX_CHARS = 4096


class _Tokens:
    """Tokens of one run waiting in the queue as one frame, serialised when it is sent."""

    __slots__ = ("chars", "parts", "run_id", "seq")

    def __init__(self, seq: int, run_id: str, content: str) -> None:
        self.seq = seq
        self.run_id = run_id
        self.parts = [content]
        self.chars = len(content)

    def dump(self) -> str:
        message = TokenMessage(seq=self.seq, run_id=self.run_id, content="".join(self.parts))
        return dump_server_message(message)


class Connection(Outbox):
    def __init__(
        self,
        websocket: WebSocket,
        session: Session,
        settings: BridgeSettings,
        make_runtime: Callable[[Outbox], SessionRuntime],
    ) -> None:
        self._ws = websocket
        self._session = session
        self._settings = settings
        self._queue: deque[str | _Tokens] = deque()
        # True only while a send is suspended, i.e. while the client is not keeping up.
        self._sending = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._pong = asyncio.Event()
        self._greeted = asyncio.Event()
        self._finished = asyncio.Event()
        self._closed = asyncio.Event()
        self._close_code: int | None = None
        self._close_reason = ""
        self.runtime = make_runtime(self)

    # Outbox ------------------------------------------------------------------------------------

    async def send(self, message: BaseModel) -> None:
        if self._sending and type(message) is TokenMessage and self._coalesce(message):
            return
        while len(self._queue) >= self._settings.send_queue_size and not self._finished.is_set():
            self._room.clear()
            await self._room.wait()
        if self._sending and type(message) is TokenMessage and not self._closed.is_set():
            # The client is behind: later tokens of this run may join this frame.
            self._queue.append(_Tokens(self._session.next_seq(), message.run_id, message.content))
            self._wake.set()
            return
        self.post(message)

    def _coalesce(self, message: TokenMessage) -> bool:
        """Append a token to the last queued frame when that is a token frame of the same run.

        A frame only becomes coalescable while the writer is stuck in a send, so a client that
        keeps up gets one frame per token, at once, and a client that falls behind gets fewer,
        larger frames instead of a queue of tiny ones (the writer's cost is per frame).
        """
        last = self._queue[-1] if self._queue else None
        if (
            type(last) is not _Tokens
            or last.run_id != message.run_id
            or last.chars + len(message.content) > _COALESCE_MAX_CHARS
        ):
            return False
        last.parts.append(message.content)
        last.chars += len(message.content)
        return True

    def post(self, message: BaseModel) -> None:
        if self._closed.is_set():
            return
        message.seq = self._session.next_seq()  # type: ignore[attr-defined]
        self._queue.append(dump_server_message(message))
        self._wake.set()

    # Lifecycle ---------------------------------------------------------------------------------

    def finish(self, code: int | None, reason: str = "") -> None:
        """End the connection; `None` means the peer is gone and no close frame is sent."""
        if not self._finished.is_set():
            self._close_code, self._close_reason = code, reason
            self._finished.set()
            self._room.set()

    async def wait_closed(self, timeout_s: float) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._closed.wait()
        except TimeoutError:
            log.warning("connection for session %s did not close in time", self._session.id)

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        workers = [asyncio.create_task(self._read()), asyncio.create_task(self._watch())]
        try:
            await self._finished.wait()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.runtime.close()
            await self._close_socket(writer)

    async def _close_socket(self, writer: asyncio.Task[None]) -> None:
        if self._close_code is not None and not writer.done():
            self._wake.set()
            try:
                async with asyncio.timeout(_FLUSH_TIMEOUT_S):
                    while self._queue and not writer.done():
                        self._room.clear()
                        await self._room.wait()
            except TimeoutError:
                log.info("dropped %d queued messages at close", len(self._queue))
        self._closed.set()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        if self._close_code is not None and self._ws.client_state is WebSocketState.CONNECTED:
            try:
                await self._ws.close(self._close_code, self._close_reason[:120])
            except (RuntimeError, OSError, WebSocketDisconnect):
                pass

    # Tasks -------------------------------------------------------------------------------------

    async def _write(self) -> None:
        try:
            while True:
                if not self._queue:
                    self._room.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = self._queue.popleft()
                if len(self._queue) < self._settings.send_queue_size:
                    self._room.set()
                frame = item if isinstance(item, str) else item.dump()
                self._sending = True
                try:
                    await self._ws.send_text(frame)
                finally:
                    self._sending = False
        except (WebSocketDisconnect, RuntimeError, OSError):
            self.finish(None)
        except Exception:
            log.exception("session %s: writer failed; closing with 1011", self._session.id)
            self.finish(CloseCode.INTERNAL, "internal error")

    async def _read(self) -> None:
        try:
            while True:
                event = await self._ws.receive()
                if event["type"] == "websocket.disconnect":
                    self.finish(None)
                    return
                await self._on_frame(event.get("text"))
        except LimitExceeded as exc:
            log.info("closing session %s: %s", self._session.id, exc.message)
            self.finish(exc.close_code, exc.message)
        except (WebSocketDisconnect, OSError):
            self.finish(None)
        except Exception:
            log.exception("session %s: unexpected error; closing with 1011", self._session.id)
            self.finish(CloseCode.INTERNAL, "internal error")

    async def _on_frame(self, text: str | None) -> None:
        if text is None:
            self.post(
                ErrorMessage(
                    code=ErrorCode.BINARY_NOT_SUPPORTED,
                    message="binary frames are not part of the protocol; send JSON text",
                )
            )
            return
        limit = self._settings.max_message_bytes
        if len(text) > limit or (len(text) * 4 > limit and len(text.encode()) > limit):
            raise LimitExceeded(
                f"message is larger than {limit} bytes", close_code=CloseCode.TOO_BIG
            )
        try:
            message = parse_client_message(text)
            if isinstance(message, PingMessage):
                self.post(ServerPongMessage(nonce=message.nonce))
            elif isinstance(message, PongMessage):
                self._pong.set()
            else:
                await self.runtime.handle(message)
                if self.runtime.greeted:
                    self._greeted.set()
        except ProtocolError as exc:
            self.post(ErrorMessage(code=exc.code, message=exc.message))

    async def _watch(self) -> None:
        """Hello deadline first, then the heartbeat: a ping, and close 4408 without a pong."""
        try:
            async with asyncio.timeout(self._settings.hello_timeout_s):
                await self._greeted.wait()
        except TimeoutError:
            self.finish(CloseCode.POLICY, "no hello in time")
            return
        while True:
            await asyncio.sleep(self._settings.heartbeat_interval_s)
            self._pong.clear()
            self.post(ServerPingMessage(nonce=secrets.token_hex(4)))
            try:
                async with asyncio.timeout(self._settings.heartbeat_timeout_s):
                    await self._pong.wait()
            except TimeoutError:
                self.finish(CloseCode.HEARTBEAT_TIMEOUT, "no pong in time")
                return
