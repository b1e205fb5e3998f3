"""Helpers for tests with real services: fail (never skip) without them, a fresh namespace."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import pytest

from bridge.redis_store import RedisStore
from bridge.testing.redis_server import MissingExecutable, RedisServer

T = TypeVar("T")


def require(start: Callable[[], T]) -> T:
    """Start a real service, failing the test (never skipping it) when it is not installed:
    in CI that is the rule, and elsewhere a skipped test would look like a passing one."""
    try:
        return start()
    except MissingExecutable as exc:
        pytest.fail(str(exc), pytrace=False)


def cluster_name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@contextlib.asynccontextmanager
async def store_on(server: RedisServer) -> AsyncIterator[RedisStore]:
    """A store in a namespace of its own, emptied and closed afterwards."""
    store = await RedisStore.connect(server.url, cluster_name())
    try:
        yield store
    finally:
        # The server outlives the test: leave it as empty as the test found it.
        keys = [key async for key in store.client.scan_iter(f"{store.namespace}*")]
        if keys:
            await store.client.delete(*keys)
        await store.close()
