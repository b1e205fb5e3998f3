"""uvicorn's protocol classes with the deadlines uvicorn does not have.

- A request head must arrive in time. uvicorn starts its keep-alive timer only after a response,
  and cancels it when bytes arrive, so a socket that never sends a full request head (idle, or
  half an upgrade request) is held for ever, and enough of them use up the descriptors. Here a
  watchdog checks every `handshake_timeout_s` that a request head has completed since the last
  check, and cuts the socket when none has and none is being answered.
- A close frame goes out even to a peer that is not reading, and the socket is cut if the peer
  has not finished the closing handshake in `close_timeout_s`. uvicorn waits for the write buffer
  to drain before writing the close frame, which a peer that never reads never lets happen, and
  its own close timer ends in `transport.close()`, which also waits for the buffer to drain.
- A peer that sends WebSocket pings without reading the pongs is cut once the unread bytes pass
  a bound; the answers to pings are written outside uvicorn's flow control.
- A peer that goes on sending after our close frame is no longer read once it has sent more than
  a few frames' worth: parsing a flooder's frames only to drop them cost more loop time than
  anything else it did (3 MB of 30-byte pings is 100,000 frames). Reading stops rather than the
  socket being cut, so our close frame still reaches a peer that reads it; the close deadline
  cuts the socket, and the peer's writes block meanwhile.

`uvicorn_options(settings)` gives the options `agent-bridge serve` and the tests' runner use;
an application that runs the bridge's router under its own uvicorn should pass them too (or set
the equivalent timeouts on its reverse proxy: docs/security.md).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from bridge.limits import ConnectionLimits

__all__ = ["guarded_protocols", "uvicorn_options"]

log = logging.getLogger(__name__)

# Bytes the peer may leave unread, on top of the largest frame, before its pings stop being
# answered politely.
_UNREAD_SLACK = 1 << 20
# Bytes read after our close frame while waiting for the peer's: frames already in flight and
# its close frame fit many times over.
_AFTER_CLOSE_BYTES = 64 << 10


def guarded_protocols(
    limits: ConnectionLimits,
) -> tuple[type[asyncio.Protocol], type[asyncio.Protocol]]:
    """The HTTP and WebSocket protocol classes to give uvicorn (`http=`, `ws=`)."""
    handshake_timeout_s = limits.handshake_timeout_s
    close_timeout_s = limits.close_timeout_s
    max_unread = 2 * limits.max_message_bytes + _UNREAD_SLACK

    class GuardedWebSocket(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.close_timeout = close_timeout_s
            self._after_close = 0

        async def send(self, message: Any) -> None:
            closing = (
                message["type"] == "websocket.close"
                and self.handshake_complete
                and not self.close_sent
                and not self.disconnected
            )
            if closing:
                # Nothing else is written after the close frame, so letting it past the paused
                # writer cannot grow the buffer by more than the frame itself.
                self.writable.set()
            await super().send(message)
            if closing and self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = self.loop.call_later(close_timeout_s, self._cut)

        def data_received(self, data: bytes) -> None:
            if self.close_sent and not self.disconnected:
                # After our close frame only the peer's close matters; a peer still sending
                # at full speed would have every byte parsed and dropped until the deadline.
                self._after_close += len(data)
                if self._after_close > _AFTER_CLOSE_BYTES:
                    self.transport.pause_reading()
                    return
            super().data_received(data)

        def handle_ping(self) -> None:
            if self.transport.get_write_buffer_size() > max_unread:
                log.info("cutting %s: sends pings and reads nothing", _peer(self.client))
                self._cut()
                return
            super().handle_ping()

        def _cut(self) -> None:
            self.close_timer = None
            self.transport.abort()

    class GuardedHTTP(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_watch: asyncio.TimerHandle | None = None
            self._seen_cycle: object = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._seen_cycle = self.cycle
            self._head_watch = self.loop.call_later(handshake_timeout_s, self._check_head)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_watch is not None:
                self._head_watch.cancel()
                self._head_watch = None
            super().connection_lost(exc)

        def _check_head(self) -> None:
            self._head_watch = None
            transport = self.transport
            if transport is None or transport.is_closing() or transport.get_protocol() is not self:
                # Closed, or upgraded: the WebSocket side has its own deadlines.
                return
            cycle = self.cycle
            progressed = cycle is not self._seen_cycle
            waiting_for_head = cycle is None or (
                cycle.response_complete and self.timeout_keep_alive_task is None
            )
            if not progressed and waiting_for_head:
                log.info(
                    "cutting %s: no complete request head in %.0f s",
                    _peer(self.client),
                    handshake_timeout_s,
                )
                transport.abort()
                return
            self._seen_cycle = cycle
            self._head_watch = self.loop.call_later(handshake_timeout_s, self._check_head)

    return GuardedHTTP, GuardedWebSocket


def uvicorn_options(limits: ConnectionLimits, *, compression: bool = False) -> dict[str, Any]:
    """uvicorn settings that match the bridge's limits."""
    http, ws = guarded_protocols(limits)
    return {
        "http": http,
        "ws": ws,
        # Room for the frame header on top of the largest message the bridge accepts.
        "ws_max_size": limits.max_message_bytes + 1024,
        "ws_per_message_deflate": compression,
        # The bridge runs its own heartbeat in the protocol, with its own close code.
        "ws_ping_interval": None,
    }


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"
