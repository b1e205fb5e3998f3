"""What the agent needs from a connection: a way to send server messages."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

__all__ = ["Outbox"]


class Outbox(Protocol):
    async def send(self, message: BaseModel) -> None:
        """Queue a message, waiting while the client is behind (tokens: backpressure)."""

    def post(self, message: BaseModel) -> None:
        """Queue a control message at once; it never waits and is never dropped."""
