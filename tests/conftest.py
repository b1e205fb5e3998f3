"""Shared fixtures: a real uvicorn server on a free loopback port, and clients for it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bridge import BridgeSettings, ServerTools, create_app
from bridge.models.base import Model
from bridge.testing import RunningServer, serve_app

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

StartBridge = Callable[..., contextlib.AbstractAsyncContextManager[RunningServer]]


@pytest.fixture
def start_bridge() -> StartBridge:
    """`async with start_bridge(model=..., **settings) as server:` runs the bridge on uvicorn."""

    @contextlib.asynccontextmanager
    async def start(
        *,
        model: Model | Callable[[str], Model] | None = None,
        server_tools: ServerTools | None = None,
        **settings: Any,
    ) -> AsyncIterator[RunningServer]:
        config = BridgeSettings(**settings)
        app = create_app(config, model=model, server_tools=server_tools)
        async with serve_app(app, max_message_bytes=config.max_message_bytes) as server:
            yield server

    return start
