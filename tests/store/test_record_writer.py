"""The worker's side of storing a running session in a real Redis: a write whose answer never
came, a write that finds another worker holding the session."""

from __future__ import annotations

import asyncio

from bridge.limits import SessionLimits
from bridge.protocol import RunStartedMessage
from bridge.record import Changes
from bridge.redis_store import RedisStore
from bridge.server.cluster import Cluster
from bridge.server.record_writer import RecordWriter
from bridge.session import Session

BOUND_S = 5


class AnswerLost(Cluster):
    """Applies each write in Redis, then waits as if its answer were still on the way: a
    caller cancelled meanwhile never learns the write arrived."""

    def __init__(self, store: RedisStore) -> None:
        super().__init__(store, lease_s=30)
        self.written = asyncio.Event()
        self.hold = False

    async def save(self, session_id: str, changes: Changes, ttl_s: float) -> str:
        saved = await super().save(session_id, changes, ttl_s)
        self.written.set()
        if self.hold:
            await asyncio.Event().wait()
        return saved


def busy_session() -> Session:
    session = Session("s1", clock=lambda: 1_000.0, limits=SessionLimits())
    session.greet([])
    for n in range(5):
        session.outbound.push(RunStartedMessage(run_id=f"r{n}", content=f"go {n}"))
    return session


async def test_a_cancelled_write_is_followed_by_a_whole_one(redis_store: RedisStore) -> None:
    cluster = AnswerLost(redis_store)
    assert await redis_store.acquire("s1", cluster.worker, 30)
    writer = RecordWriter(cluster, ttl_s=60, taken=lambda _session: None)
    session = busy_session()
    assert await writer.save(session)
    assert session.stored is not None

    session.outbound.push(RunStartedMessage(run_id="r5", content="go 5"))
    cluster.hold = True
    cluster.written.clear()
    write = asyncio.create_task(writer.save(session))
    async with asyncio.timeout(BOUND_S):
        await cluster.written.wait()
    write.cancel()
    await asyncio.gather(write, return_exceptions=True)
    # The frame is in Redis, but the worker cannot know: it must not append it again.
    assert session.stored is None
    cluster.hold = False

    session.outbound.push(RunStartedMessage(run_id="r6", content="go 6"))
    assert await writer.save(session)
    assert await redis_store.get("s1") == session.dump()


async def test_a_write_that_finds_another_owner_stops_that_session(
    redis_store: RedisStore,
) -> None:
    cluster = Cluster(redis_store, lease_s=30)
    taken: list[Session] = []
    writer = RecordWriter(cluster, ttl_s=60, taken=taken.append)
    session = busy_session()
    assert await redis_store.acquire("s1", "another-worker", 30)
    before = await redis_store.get("s1")
    await writer.put(session)
    assert taken == [session]
    assert await redis_store.get("s1") == before
    assert writer.unstored == set()


class Counting(Cluster):
    def __init__(self, store: RedisStore) -> None:
        super().__init__(store, lease_s=30)
        self.writes = 0

    async def save(self, session_id: str, changes: Changes, ttl_s: float) -> str:
        self.writes += 1
        return await super().save(session_id, changes, ttl_s)


async def test_a_write_that_would_change_nothing_is_not_sent(redis_store: RedisStore) -> None:
    cluster = Counting(redis_store)
    assert await redis_store.acquire("s1", cluster.worker, 30)
    writer = RecordWriter(cluster, ttl_s=60, taken=lambda _session: None)
    session = busy_session()
    assert await writer.save(session) and cluster.writes == 1
    # The worker handing a session over stores it once more; often nothing changed since.
    assert await writer.save(session) and cluster.writes == 1
    session.queue.append("later")
    assert await writer.save(session) and cluster.writes == 2
    assert await redis_store.get("s1") == session.dump()
    # Asked to, it writes all the same: the record's time to live starts again.
    assert await writer.save(session, refresh=True) and cluster.writes == 3
    assert 59_000 < await redis_store.client.pttl(redis_store.record_key("s1")) <= 60_000
    # A session whose stored state is unknown is written whatever it holds.
    session.stored = None
    assert await writer.save(session) and cluster.writes == 4
