"""A `SessionStore` in Redis, so several processes and hosts serve one set of sessions.

    store = await RedisStore.connect("redis://127.0.0.1:6379/0", cluster="prod")

Every key is namespaced `{prefix}:{cluster}:...`, so clusters (and test runs) can share one
Redis without seeing each other:

- `{prefix}:{cluster}:session:{id}`: string, the record as JSON, expiring with its TTL;
- `{prefix}:{cluster}:owner:{id}`: string, the owner's id, expiring with the lease.

The lease is taken with `SET NX PX` and renewed or released only by the owner holding it. The
compare and the write have to be one step (between a `GET` and a `PEXPIRE` another worker may
take a lapsed lease, and the renewal would then extend *its* lease), so each is a small Lua
script: one round trip, atomic on the server, no optimistic retry loop under contention and no
connection pinned from the pool as `WATCH`/`MULTI` would need. Each script touches one key, so
it also runs on a Redis Cluster.

Redis errors leave this module as `RedisUnavailable`, a builtin `ConnectionError`, so callers
handle a lost store without importing `redis`. This is the only module that imports `redis`.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["RedisStore", "RedisUnavailable", "redact_url"]

Record = dict[str, Any]

DEFAULT_PREFIX = "bridge"
# Cluster names become part of every key: keep them to characters that need no quoting and
# cannot contain the ':' separator, so one cluster's keys never match another's pattern.
_CLUSTER = re.compile(r"[A-Za-z0-9_.-]{1,64}")

# KEYS[1] the owner key; ARGV[1] the owner, ARGV[2] the lease in ms. Take a free lease (2), or
# renew our own (1); a live lease of another owner is left alone (0). The owner tells 2 from 1
# on renewal: its lease had vanished (a Redis restarted empty, or a lapse nobody took), and so
# may the record it guards.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 2
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
_TAKEN = 2

# KEYS[1] the owner key; ARGV[1] the owner. Only the holder may give the lease up: a worker
# whose lease lapsed and was taken must not free its successor's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisUnavailable(ConnectionError):
    """Redis could not be reached or did not answer in time (the message names no secret)."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port is not None else ""
        netloc = f"{user}:***@{host}{port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        # Unparseable (a bad port, say): show the scheme only rather than risk the secret.
        return url.split("://", 1)[0] + "://***"


def _ms(seconds: float) -> int:
    # Redis refuses a zero or negative PX; a lease or record asked for that short lives 1 ms.
    return max(1, round(seconds * 1000))


class RedisStore:
    """Session records and owner leases of one cluster, in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        cluster: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        where: str = "redis",
    ) -> None:
        if not _CLUSTER.fullmatch(cluster):
            raise ValueError(
                f"cluster name {cluster!r} must be 1-64 letters, digits, '_', '-' or '.'"
            )
        if not _CLUSTER.fullmatch(prefix):
            raise ValueError(f"key prefix {prefix!r} must be 1-64 letters, digits, '_', '-', '.'")
        self.client = client
        self.cluster = cluster
        self.namespace = f"{prefix}:{cluster}:"
        self._where = where
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    @classmethod
    def from_url(
        cls, url: str, cluster: str, *, prefix: str = DEFAULT_PREFIX, timeout_s: float = 2.0
    ) -> RedisStore:
        """A store on the Redis at `url`, not yet checked (a server checks it at start)."""
        where = redact_url(url)
        try:
            client = aioredis.Redis.from_url(
                url,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                # One quick retry: a pooled connection that died with a Redis restart fails
                # once and the retry gets a fresh one; more would only delay the failure a
                # caller has to see (a refusal with 1013 beats a stalled handshake).
                retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=1),
                health_check_interval=0,
            )
        except ValueError as exc:
            raise ValueError(f"invalid Redis URL {where}: {_scrub(str(exc), url)}") from None
        return cls(client, cluster, prefix=prefix, where=where)

    @classmethod
    async def connect(
        cls,
        url: str,
        cluster: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 2.0,
    ) -> RedisStore:
        """A store on the Redis at `url`, checked with a PING: raises `RedisUnavailable` (at
        once when refused, within 2 x `timeout_s` when nothing answers) if it cannot be used,
        so a server refuses to start instead of failing its first client."""
        store = cls.from_url(url, cluster, prefix=prefix, timeout_s=timeout_s)
        client, where = store.client, store._where
        try:
            async with asyncio.timeout(timeout_s * 2):
                await client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            await client.aclose()
            raise RedisUnavailable(
                f"Redis at {where} cannot be used: {_scrub(str(exc), url) or type(exc).__name__}"
            ) from None
        return store

    async def close(self) -> None:
        await self.client.aclose()

    async def healthy(self, timeout_s: float = 1.0) -> bool:
        """Whether Redis answers a PING within `timeout_s`; never raises."""
        try:
            async with asyncio.timeout(timeout_s):
                return bool(await self.client.ping())
        except (RedisError, OSError, TimeoutError):
            return False

    # Keys --------------------------------------------------------------------------------------

    def record_key(self, session_id: str) -> str:
        return f"{self.namespace}session:{session_id}"

    def owner_key(self, session_id: str) -> str:
        return f"{self.namespace}owner:{session_id}"

    # SessionStore ------------------------------------------------------------------------------

    async def get(self, session_id: str) -> Record | None:
        with self._errors("get"):
            raw = await self.client.get(self.record_key(session_id))
        if raw is None:
            return None
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError(f"the stored record of session {session_id!r} is not an object")
        return record

    async def put(self, session_id: str, record: Record, ttl_s: float) -> None:
        key = self.record_key(session_id)
        with self._errors("put"):
            if ttl_s <= 0:
                # Expired on arrival, as in the memory store: nothing to keep.
                await self.client.delete(key)
                return
            await self.client.set(key, _encode(record), px=_ms(ttl_s))

    async def delete(self, session_id: str) -> None:
        with self._errors("delete"):
            await self.client.delete(self.record_key(session_id), self.owner_key(session_id))

    async def acquire(self, session_id: str, owner: str, ttl_s: float) -> bool:
        return await self.renew(session_id, owner, ttl_s) is not None

    async def renew(self, session_id: str, owner: str, ttl_s: float) -> str | None:
        """Like `acquire`, saying how: "renewed" (it was the caller's), "taken" (it was free:
        for a holder, its lease had vanished), or None (another owner holds it)."""
        with self._errors("acquire"):
            taken = await self._acquire(keys=[self.owner_key(session_id)], args=[owner, _ms(ttl_s)])
        if not taken:
            return None
        return "taken" if int(taken) == _TAKEN else "renewed"

    async def release(self, session_id: str, owner: str) -> None:
        with self._errors("release"):
            await self._release(keys=[self.owner_key(session_id)], args=[owner])

    async def owner(self, session_id: str) -> str | None:
        with self._errors("owner"):
            raw = await self.client.get(self.owner_key(session_id))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    # Workers ---------------------------------------------------------------------------------

    def worker_channel(self, worker: str) -> str:
        return f"{self.namespace}worker:{worker}"

    async def tell(self, worker: str, message: str) -> None:
        """Send a short message to one worker of the cluster (it may be gone: nobody hears)."""
        with self._errors("tell"):
            await self.client.publish(self.worker_channel(worker), message)

    async def listen(self, worker: str) -> AsyncIterator[str]:
        """The messages sent to this worker, until the caller stops iterating."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            with self._errors("listen"):
                await pubsub.subscribe(self.worker_channel(worker))
            while True:
                with self._errors("listen"):
                    message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    yield data.decode() if isinstance(data, bytes) else str(data)
        finally:
            with suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # Small shared values ------------------------------------------------------------------------
    # Plain primitives under the cluster's namespace (`{prefix}:{cluster}:value:{name}`), for
    # state other modules keep across workers without knowing Redis is behind it.

    def value_key(self, name: str) -> str:
        return f"{self.namespace}value:{name}"

    async def put_new(self, name: str, value: str, ttl_s: float) -> bool:
        """Store `value` under `name` for `ttl_s` unless something is there; True if stored."""
        with self._errors("put_new"):
            return bool(await self.client.set(self.value_key(name), value, nx=True, px=_ms(ttl_s)))

    async def take(self, name: str) -> str | None:
        """The value under `name`, removed in the same step: two callers never both get it."""
        with self._errors("take"):
            raw = await self.client.getdel(self.value_key(name))
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def count(self, name: str, window_s: float) -> int:
        """Add one to the counter `name` and return it; the counter starts again from zero
        `window_s` after its first count."""
        key = self.value_key(name)
        with self._errors("count"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, _ms(window_s), nx=True)
                counted, _ = await pipe.execute()
        return int(counted)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            # Command errors (a wrong type, a script error) are bugs, not an outage: keep them.
            if isinstance(exc, RedisError) and not _is_outage(exc):
                raise
            raise RedisUnavailable(f"Redis at {self._where} failed on {operation}: {exc}") from exc


def _encode(record: Record) -> bytes:
    """Compact UTF-8 JSON; a string holding a lone surrogate (which UTF-8 cannot carry) makes
    the whole record ASCII with escapes instead, which still loads back exactly."""
    try:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(record, separators=(",", ":")).encode()


def _is_outage(exc: RedisError) -> bool:
    # Refused, reset, timed out, still loading its data set, or our credentials refused: the
    # store cannot be used now, whatever was asked of it.
    return isinstance(exc, RedisConnectionError | RedisTimeoutError)


def _scrub(message: str, url: str) -> str:
    """A driver's message with the URL's password removed, should it ever quote it."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return message.replace(password, "***") if password else message
