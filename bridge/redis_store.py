"""A `SessionStore` in Redis, so several processes and hosts serve one set of sessions.

    store = await RedisStore.connect("redis://127.0.0.1:6379/0", cluster="prod")

Every key is namespaced `{prefix}:{cluster}:...`, so clusters (and test runs) can share one
Redis without seeing each other. A session's keys share the hash tag `{id}` (they sit in one
slot of a Redis Cluster, so one script may touch them all):

- `...:{id}:record`: hash; `head`, the small part of the record that changes on every step,
  `tools`, the client's tool definitions (written only when they change), and `parked`, the
  owner's id while it runs the session with no client (a claimer may then take it unasked);
- `...:{id}:turns`, `:frames`, `:finished`, `:decided`: lists; the conversation, the replay
  window's frames, finished call ids and decided approvals, appended to and trimmed at the
  front as the session goes (see `bridge.record`), so a write costs what changed, not what the
  session holds. All of these expire with the session's TTL;
- `...:{id}:owner`: string, the owner's id, expiring with the lease.

The lease is taken with `SET NX PX` and renewed or released only by the owner holding it. The
compare and the write have to be one step (between a `GET` and a `PEXPIRE` another worker may
take a lapsed lease, and the renewal would then extend *its* lease), so each is a small Lua
script (`bridge/redis_scripts.py`): one round trip, atomic on the server, no optimistic retry
loop under contention and no connection pinned from the pool as `WATCH`/`MULTI` would need.
A write of a running session is fenced the same way: it applies only while its writer holds
the lease, so a worker that lost a session can never write over its successor's record.

Workers talk through one pub/sub channel each, `...:worker:{worker}`. Redis errors leave this
module as `RedisUnavailable`, a builtin `ConnectionError`, so callers handle a lost store
without importing `redis`. This is the only module that imports `redis`.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bridge import redis_scripts as scripts
from bridge.record import JSON_LISTS, LISTS, Changes, join, split

__all__ = ["Arrival", "RedisStore", "RedisUnavailable", "redact_url"]

Record = dict[str, Any]

# Lease renewals sent in one pipeline: a few tens of kilobytes each way.
_RENEWALS_PER_TRIP = 1000
_GRANTED = {scripts.RENEWED: "renewed", scripts.FREE: "taken", scripts.UNPARKED: "unparked"}


@dataclass(frozen=True, slots=True)
class Arrival:
    """What a claim came to: "refused" (the stored session does not admit the client),
    "asked" (`holder` was asked to let go; "" when the lease lapsed mid-claim), "busy" (the
    holder would not let go in time), or the lease granted: "taken" (it was free), "renewed"
    (it was the claimer's), "unparked" (taken from `holder`, which had parked the session),
    "given" (`holder` let go when asked), with the stored `record` (None: nothing stored, or a
    lease renewed for a claimer that runs the session and needs none)."""

    how: str
    holder: str = ""
    record: Record | None = None
    # Lists read only in part, because the claimer holds an earlier copy (`since`): by name,
    # how many of the copy's oldest items to drop and the items added since, as stored. The
    # record has these lists empty.
    since: dict[str, tuple[int, list[str]]] = field(default_factory=dict)

    @property
    def granted(self) -> bool:
        return self.how in ("taken", "renewed", "unparked", "given")


DEFAULT_PREFIX = "bridge"
# Cluster names become part of every key: keep them to characters that need no quoting and
# cannot contain the ':' separator, so one cluster's keys never match another's pattern.
_CLUSTER = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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
        self._acquire = client.register_script(scripts.ACQUIRE)
        self._release = client.register_script(scripts.RELEASE)
        self._arrive = client.register_script(scripts.ARRIVE)
        self._park = client.register_script(scripts.PARK)
        self._give = client.register_script(scripts.GIVE)
        self._save = client.register_script(scripts.SAVE)
        self._put_bounded = client.register_script(scripts.PUT_BOUNDED)

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

    def session_key(self, session_id: str, part: str) -> str:
        """One of a session's keys: "record", "owner", or a list of `bridge.record.LISTS`."""
        return f"{self.namespace}{{{session_id}}}:{part}"

    def record_key(self, session_id: str) -> str:
        return self.session_key(session_id, "record")

    def owner_key(self, session_id: str) -> str:
        return self.session_key(session_id, "owner")

    def keys_of(self, session_id: str) -> list[str]:
        """The owner, the record and the lists, as `scripts.SAVE` takes them."""
        return [self.session_key(session_id, part) for part in ("owner", "record", *LISTS)]

    # SessionStore ------------------------------------------------------------------------------

    async def get(self, session_id: str) -> Record | None:
        keys = self.keys_of(session_id)
        with self._errors("get"):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hmget(keys[1], "head", "tools")
                for key in keys[2:]:
                    pipe.lrange(key, 0, -1)
                (head, tools), *lists = await pipe.execute()
        return _record(session_id, head, tools, lists)

    async def put(self, session_id: str, record: Record, ttl_s: float) -> None:
        if ttl_s <= 0:
            # Expired on arrival, as in the memory store: nothing to keep.
            with self._errors("put"):
                await self.client.delete(*self.keys_of(session_id)[1:])
            return
        await self.save(session_id, split(record), ttl_s)

    async def save(
        self,
        session_id: str,
        changes: Changes,
        ttl_s: float,
        *,
        writer: str = "",
        lease_s: float = 0.0,
    ) -> str:
        """Apply `changes` to the stored record; with a `writer`, only while it holds the lease.

        Returns "saved"; "not owner" when another worker holds the lease (nothing written);
        "lost" when the changes are not `whole` and the lease is gone (a Redis that restarted
        empty lost the record too) or the stored lists are not what they were computed from:
        nothing is written, and only a whole write may go ahead.
        """
        args: list[str | bytes | int] = [
            writer,
            _ms(lease_s),
            _ms(ttl_s),
            "1" if changes.whole else "0",
            _bytes(changes.head),
            "0" if changes.tools is None else "1",
            b"" if changes.tools is None else _bytes(changes.tools),
        ]
        for name in LISTS:
            part = changes.tails.get(name)
            if part is None:
                args += ["0", 0, 0, 0]
                continue
            args += ["1" if part.reset else "0", part.drop, part.expect, len(part.items)]
            args += [_bytes(item) for item in part.items]
        with self._errors("save"):
            done = int(await self._save(keys=self.keys_of(session_id), args=args))
        return {1: "saved", 0: "not owner"}.get(done, "lost")

    async def delete(self, session_id: str) -> None:
        with self._errors("delete"):
            await self.client.delete(*self.keys_of(session_id))

    async def acquire(self, session_id: str, owner: str, ttl_s: float) -> bool:
        return await self.renew(session_id, owner, ttl_s) is not None

    async def renew(self, session_id: str, owner: str, ttl_s: float) -> str | None:
        """Like `acquire`, saying how: "renewed" (it was the caller's), "taken" (it was free:
        for a holder, its lease had vanished), or None (another owner holds it)."""
        with self._errors("acquire"):
            taken = await self._acquire(keys=[self.owner_key(session_id)], args=[owner, _ms(ttl_s)])
        return _renewed(taken)

    async def renew_all(
        self, session_ids: Sequence[str], owner: str, ttl_s: float
    ) -> list[str | None]:
        """`renew` for many sessions, in order, a thousand to a round trip: one at a time, a
        worker holding 50,000 sessions would take longer to renew them than a lease lasts."""
        found: list[str | None] = []
        for start in range(0, len(session_ids), _RENEWALS_PER_TRIP):
            chunk = session_ids[start : start + _RENEWALS_PER_TRIP]
            with self._errors("acquire"):
                async with self.client.pipeline(transaction=False) as pipe:
                    for session_id in chunk:
                        args: list[str | int] = [owner, _ms(ttl_s)]
                        await self._acquire(
                            keys=[self.owner_key(session_id)], args=args, client=pipe
                        )
                    replies = await pipe.execute()
            found += [_renewed(reply) for reply in replies]
        return found

    async def arrive(
        self,
        session_id: str,
        claimer: str,
        ttl_s: float,
        *,
        principal: str,
        token: str | None,
        ask: str,
        held: Mapping[str, tuple[int, int]] | None = None,
        counting: str = "",
        running: bool = False,
    ) -> Arrival:
        """Claim the lease for a client of `principal` holding resume `token`, checked against
        the stored head first (see `scripts.ARRIVE`): granted with the stored record, or the
        holder asked to let go (sent `ask`; a holder that parked the session is not asked).

        `held`: per list, (items ever added, items kept) of an earlier copy the claimer still
        holds; such a list comes back only in part where the stored one extends the copy (see
        `Arrival.since`); the counts of the conversation, finished calls and decided approvals
        belong to `counting` (`Session.counting`), and are used only if the stored ones do.
        `running`: the claimer runs the session (it parked it), and a lease still its own comes
        back "renewed" with no record."""
        # SHA-1 only makes the comparison's time independent of the token; it guards nothing.
        digest = "" if token is None else hashlib.sha1(_bytes(token)).hexdigest()
        channels = self.worker_channel("")
        args: list[str | int] = [claimer, _ms(ttl_s), channels, ask, principal, digest]
        for name in LISTS:
            added, kept = (held or {}).get(name, ("", ""))
            args += [added, kept]
        args += [counting, "1" if running else "0"]
        with self._errors("claim"):
            reply = await self._arrive(keys=self.keys_of(session_id), args=args)
        how = int(reply[0])
        if how == scripts.REFUSED:
            return Arrival("refused")
        holder = _text(reply[1])
        if how == scripts.ASKED:
            return Arrival("asked", holder)
        if len(reply) == 2:
            return Arrival(_GRANTED[how], holder)  # renewed by a claimer running the session
        head, tools, *parts = reply[2:]
        lists: list[Any] = []
        since: dict[str, tuple[int, list[str]]] = {}
        for name, dropped, items in zip(LISTS, parts[::2], parts[1::2], strict=True):
            if int(dropped) < 0:
                lists.append(items)
            else:
                lists.append([])
                since[name] = (int(dropped), [_text(item) for item in items])
        record = _record(session_id, head, tools, lists)
        return Arrival(_GRANTED[how], holder, record, since)

    async def park(self, session_id: str, holder: str) -> bool:
        """Mark a session `holder` runs with no client, all of it stored, as free to take
        without asking (False: `holder` does not hold it, or nothing is stored)."""
        keys = [self.owner_key(session_id), self.record_key(session_id)]
        with self._errors("park"):
            return bool(await self._park(keys=keys, args=[holder]))

    async def give(self, session_id: str, holder: str, to: str, ttl_s: float, message: str) -> bool:
        """Pass the lease from `holder` to `to` for `ttl_s`, and tell `to` `message` either
        way; False when `holder` did not hold it."""
        args: list[str | int] = [holder, to, _ms(ttl_s), self.worker_channel(to), message]
        with self._errors("give"):
            return bool(await self._give(keys=[self.owner_key(session_id)], args=args))

    async def release(self, session_id: str, owner: str) -> None:
        with self._errors("release"):
            await self._release(keys=[self.owner_key(session_id)], args=[owner])

    async def owner(self, session_id: str) -> str | None:
        with self._errors("owner"):
            raw = await self.client.get(self.owner_key(session_id))
        if raw is None:
            return None
        return _text(raw)

    # Workers ---------------------------------------------------------------------------------

    def worker_channel(self, worker: str) -> str:
        return f"{self.namespace}worker:{worker}"

    async def tell(self, worker: str, message: str) -> None:
        """Send a short message to one worker of the cluster (it may be gone: nobody hears)."""
        with self._errors("tell"):
            await self.client.publish(self.worker_channel(worker), message)

    async def listen(
        self, worker: str, subscribed: Callable[[], None] | None = None
    ) -> AsyncIterator[str]:
        """The messages sent to this worker, until the caller stops iterating; `subscribed` is
        called once Redis confirmed the subscription (nothing sent before that is heard)."""
        pubsub = self.client.pubsub()
        try:
            with self._errors("listen"):
                await pubsub.subscribe(self.worker_channel(worker))
                # Redis confirms a subscription with a reply of its own: messages published
                # after it are heard, so the caller is told only then (within the timeout).
                async with asyncio.timeout(5.0):
                    while True:
                        reply = await pubsub.get_message(timeout=1.0)
                        if reply is not None and reply.get("type") == "subscribe":
                            break
            if subscribed is not None:
                subscribed()
            while True:
                with self._errors("listen"):
                    message = await pubsub.get_message(timeout=1.0)
                if message is not None and message.get("type") == "message":
                    yield _text(message["data"])
        finally:
            with suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    # Small shared values ------------------------------------------------------------------------
    # Plain primitives under the cluster's namespace (`{prefix}:{cluster}:value:{name}`), for
    # state other modules keep across workers without knowing Redis is behind it.

    def value_key(self, name: str) -> str:
        return f"{self.namespace}value:{name}"

    async def put_bounded(self, group: str, name: str, value: str, ttl_s: float, keep: int) -> bool:
        """Store `value` under `{group}:name` for `ttl_s` unless something is there (False),
        and keep only the group's `keep` newest values: older ones are deleted. `take` reads
        it back under the same `{group}:name`. `group` may not contain braces."""
        if "{" in group or "}" in group:
            raise ValueError("a group name may not contain braces")
        tag = f"{{{group}}}"
        keys = [self.value_key(f"{tag}:{name}"), self.value_key(f"{tag}:~group")]
        args: list[str | int] = [value, _ms(ttl_s), max(1, keep), name, self.value_key(f"{tag}:")]
        with self._errors("put_bounded"):
            return bool(await self._put_bounded(keys=keys, args=args))

    async def take(self, name: str) -> str | None:
        """The value under `name`, removed in the same step: two callers never both get it."""
        with self._errors("take"):
            raw = await self.client.getdel(self.value_key(name))
        return None if raw is None else _text(raw)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except (RedisError, OSError) as exc:
            # Command errors (a wrong type, a script error) are bugs, not an outage: keep them.
            if isinstance(exc, RedisError) and not _is_outage(exc):
                raise
            raise RedisUnavailable(f"Redis at {self._where} failed on {operation}: {exc}") from exc


def _renewed(reply: Any) -> str | None:
    if not reply:
        return None
    return "taken" if int(reply) == scripts.TAKEN else "renewed"


def _record(session_id: str, head: Any, tools: Any, lists: list[Any]) -> Record | None:
    if head is None:
        return None
    texts: dict[str, list[str]] = {}
    for name, items in zip(LISTS, lists, strict=True):
        if name in JSON_LISTS:
            # `join` parses a JSON list part as its items joined by commas: joined here as
            # bytes, it is decoded once rather than once per item (a long conversation has
            # thousands of turns, all on the way of a session moving to another worker).
            texts[name] = [_text(b",".join(items))] if items else []
        else:
            texts[name] = [_text(item) for item in items]
    record = join(_text(head), None if tools is None else _text(tools), texts)
    if not isinstance(record, dict):
        raise ValueError(f"the stored record of session {session_id!r} is not an object")
    return record


def _bytes(text: str) -> bytes:
    # Surrogates pass through, so any string the session holds (a lone surrogate included)
    # comes back exactly; Redis keeps bytes and never looks inside.
    return text.encode("utf-8", "surrogatepass")


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "surrogatepass") if isinstance(raw, bytes) else str(raw)


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
