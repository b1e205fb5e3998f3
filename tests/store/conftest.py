"""Real services for the store tests: one `redis-server` for the session, a store per test.

Each test's store has a cluster name of its own, so tests share the server and never each
other's keys (the namespacing is what is tested as much as what keeps them apart). A missing
`redis-server` fails the tests with what to install.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from bridge.redis_store import RedisStore
from bridge.testing.redis_server import RedisServer
from tests.store.support import require, store_on


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    require(server.start)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    async with store_on(redis_server) as store:
        yield store
