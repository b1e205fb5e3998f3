"""Wiring a server into a cluster when `BRIDGE_REDIS_URL` is set; nothing else knows Redis is
there (the store and the cluster are behind `SessionStore` and `Cluster`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.server.cluster import Cluster

if TYPE_CHECKING:
    from bridge.server.settings import BridgeSettings

__all__ = ["check_redis", "cluster_from"]


def cluster_from(settings: BridgeSettings) -> Cluster | None:
    """This worker's cluster, on the shared Redis; None for a server on its own."""
    if settings.redis_url is None:
        return None
    # Imported here so that a server on its own never loads the Redis client.
    from bridge.redis_store import RedisStore

    store = RedisStore.from_url(settings.redis_url.get_secret_value(), settings.cluster)
    return Cluster(store, lease_s=settings.owner_lease_s)


async def check_redis(settings: BridgeSettings) -> None:
    """Refuse to start on a Redis that cannot be used (raises `ConnectionError` saying why)."""
    if settings.redis_url is None:
        return
    from bridge.redis_store import RedisStore

    store = await RedisStore.connect(settings.redis_url.get_secret_value(), settings.cluster)
    await store.close()
