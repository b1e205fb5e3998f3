"""Helpers for end-to-end tests that watch the server from inside: the test waits on what the
session posts or on the hub seeing a connection leave, never on time."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.agent.runtime import SessionRuntime
from bridge.protocol import CompleteMessage
from bridge.server.hub import SessionHub
from bridge.testing import RunningServer

__all__ = ["Departures", "Watch", "hub_of", "runtime_of"]


def hub_of(server: RunningServer) -> SessionHub:
    app: Any = server.server.config.app  # the FastAPI app the fixture built
    hub: SessionHub = app.state.bridge.hub
    return hub


class Watch:
    """What a session posts, seen as it happens: the test waits on events, never on time."""

    def __init__(self, runtime: SessionRuntime) -> None:
        self.posted: list[Any] = []
        self.completed = asyncio.Event()
        post = runtime.outbox.post

        def spy(message: Any) -> int:
            self.posted.append(message)
            if isinstance(message, CompleteMessage):
                self.completed.set()
            return post(message)

        runtime.outbox.post = spy  # type: ignore[method-assign]

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.posted if isinstance(m, kind)]


class Departures:
    """Signals each time the hub has processed a connection leaving."""

    def __init__(self, hub: SessionHub) -> None:
        self.left = asyncio.Event()
        self.for_good: list[bool] = []
        leave = hub.leave

        async def spy(connection: Any, for_good: bool) -> None:
            await leave(connection, for_good)
            self.for_good.append(for_good)
            self.left.set()

        hub.leave = spy  # type: ignore[method-assign]

    async def wait(self) -> None:
        await self.left.wait()
        self.left.clear()


def runtime_of(server: RunningServer, session_id: str) -> SessionRuntime:
    runtime = hub_of(server).runtime(session_id)
    assert runtime is not None
    return runtime
