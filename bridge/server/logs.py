"""Log hygiene: secrets in query strings never reach a log line, and no client floods the log.

A client that repeats one bad frame would otherwise write one line per frame. Lines are limited
per source: the connection named in the record's `extra` (`conn`), or else the logger, the
message template and its first argument (the session id in the bridge's own lines). Each source
may burst, then gets a steady trickle; the next line let through says how many were dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from bridge.server.auth import redact

__all__ = ["LimitRepeats", "RedactSecrets", "install_redaction"]

_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "bridge")


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


class _Bucket:
    __slots__ = ("at", "dropped", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at
        self.dropped = 0


class LimitRepeats(logging.Filter):
    """At most `burst` lines at once and `per_second` after that, per source."""

    def __init__(
        self,
        *,
        burst: int = 20,
        per_second: float = 1.0,
        max_sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._burst = float(burst)
        self._rate = per_second
        self._max_sources = max_sources
        self._clock = clock
        self._sources: OrderedDict[Hashable, _Bucket] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        now = self._clock()
        key = self._key(record)
        bucket = self._sources.get(key)
        if bucket is None:
            bucket = self._sources[key] = _Bucket(self._burst, now)
            if len(self._sources) > self._max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(key)
            bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
        if bucket.tokens < 1:
            bucket.dropped += 1
            return False
        bucket.tokens -= 1
        if bucket.dropped:
            record.msg = f"{record.msg} ({bucket.dropped} similar lines dropped)"
            bucket.dropped = 0
        return True

    @staticmethod
    def _key(record: logging.LogRecord) -> Hashable:
        conn = getattr(record, "conn", None)
        if isinstance(conn, Hashable) and conn is not None:
            return ("conn", conn)
        first = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if not isinstance(first, (str, int)):
            first = None
        return (record.name, str(record.msg)[:200], first)


_limiter = LimitRepeats()


def _bridge_loggers() -> list[str]:
    # A logger's filters see only the records logged on it, not its children's, so every
    # module logger of the bridge that exists by now gets the filters itself.
    known = [n for n in logging.Logger.manager.loggerDict if n.startswith("bridge.")]
    return [*_LOGGERS, *sorted(known)]


def install_redaction() -> None:
    """Add the filters to the loggers that print request lines; safe to call more than once."""
    for name in _bridge_loggers():
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
        if not any(isinstance(f, LimitRepeats) for f in logger.filters):
            logger.addFilter(_limiter)
