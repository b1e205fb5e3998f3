"""Fixtures of the scale-out tests: a real `redis-server` for the whole folder, a fresh cluster
name per test (its keys never meet another test's), and the model every worker asks.

Workers, HAProxy and any Redis a test stops are started by the tests themselves
(`support.running_cluster`), since each test does something different to them. A missing
`redis-server` or `haproxy` fails the test with what to install, never skips it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from bridge.testing import OpenAIServer
from bridge.testing.redis_server import RedisServer
from tests.store.support import require


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    server = RedisServer()
    require(server.start)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def cluster_name() -> str:
    return f"scale-{secrets.token_hex(5)}"


@pytest.fixture
async def model() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as server:
        yield server
