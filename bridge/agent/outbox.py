"""The session's outbound log with the waiting added: what the agent sends through.

Control messages are pushed at once and never wait. Tokens wait for room: while a connection is
attached, until its backlog is under the send queue size; while the session is held with no
connection, until the replay window has room, so a run whose client is away pauses instead of
dropping what the client will need when it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pydantic import BaseModel

from bridge.outbound import OutboundLog
from bridge.protocol import TokenMessage

__all__ = ["Outbox"]


class Outbox:
    def __init__(self, log: OutboundLog, *, queue_size: int) -> None:
        self.log = log
        self._queue_size = queue_size
        self._room = asyncio.Event()
        self._room.set()
        self._notify: Callable[[], None] = _nothing

    def post(self, message: BaseModel) -> int:
        """Queue a control message at once; return its seq."""
        seq = self.log.push(message)
        self._notify()
        return seq

    async def send(self, message: BaseModel) -> None:
        """Queue a message, waiting while the client is behind or away (backpressure)."""
        if type(message) is TokenMessage:
            await self.send_token(message.run_id, message.content)
            return
        await self._wait_for_room()
        self.post(message)

    async def send_token(self, run_id: str, text: str) -> None:
        """Queue a piece of the model's text, waiting while the client is behind or away."""
        await self._wait_for_room()
        self.log.push_token(run_id, text)
        self._notify()

    async def _wait_for_room(self) -> None:
        while not self._has_room():
            self._room.clear()
            await self._room.wait()

    def _has_room(self) -> bool:
        if self.log.cursor is None:
            return not self.log.full
        return self.log.backlog < self._queue_size

    # The attached connection's side --------------------------------------------------------

    def attach(self, after_seq: int | None, notify: Callable[[], None]) -> None:
        """A connection reads from after `after_seq` (None: from now on); `notify` wakes it."""
        self.log.attach(after_seq)
        self._notify = notify
        self._room.set()
        notify()

    def detach(self, notify: Callable[[], None]) -> None:
        # `==`, not `is`: each access to a bound method makes a new object that compares equal.
        if self._notify == notify:
            self.log.detach()
            self._notify = _nothing
            self._room.set()

    def take(self) -> str | None:
        frame = self.log.take()
        if frame is not None and self.log.backlog < self._queue_size:
            self._room.set()
        return frame


def _nothing() -> None:
    return None
