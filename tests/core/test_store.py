"""The in-memory session store: records, expiry, and the owner lease, on a fake clock."""

from __future__ import annotations

from bridge.store import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_record_round_trips_and_expires_after_its_ttl() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.put("s1", {"id": "s1", "n": 1}, ttl_s=10)
    assert await store.get("s1") == {"id": "s1", "n": 1}
    clock.now += 9.9
    assert await store.get("s1") is not None
    clock.now += 0.1
    assert await store.get("s1") is None and len(store) == 0


async def test_a_new_put_extends_the_life_and_delete_forgets() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    await store.put("s1", {"v": 1}, ttl_s=10)
    clock.now += 8
    await store.put("s1", {"v": 2}, ttl_s=10)
    clock.now += 8
    assert await store.get("s1") == {"v": 2}
    await store.delete("s1")
    assert await store.get("s1") is None


async def test_the_lease_has_one_owner_until_it_lapses_or_is_released() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    assert await store.acquire("s1", "worker-a", ttl_s=5)
    assert not await store.acquire("s1", "worker-b", ttl_s=5)
    assert await store.acquire("s1", "worker-a", ttl_s=5)  # renewal
    assert await store.owner("s1") == "worker-a"
    clock.now += 5
    assert await store.owner("s1") is None
    assert await store.acquire("s1", "worker-b", ttl_s=5)
    await store.release("s1", "worker-a")  # not the owner: no effect
    assert await store.owner("s1") == "worker-b"
    await store.release("s1", "worker-b")
    assert await store.owner("s1") is None


async def test_expiry_touches_only_what_expires() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    for n in range(1000):
        await store.put(f"s{n}", {"n": n}, ttl_s=100 + n)
    clock.now += 100.5
    assert len(store) == 999 and await store.get("s0") is None and await store.get("s1")
