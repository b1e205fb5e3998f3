"""Log hygiene: no credential reaches a log line, and no client floods the log.

Redaction works on the finished line. uvicorn and the `websockets` library log through
`uvicorn.error`, `uvicorn.access` and `uvicorn.asgi`: request lines with their query strings,
at debug every request header and a preview of every frame, at trace whole ASGI scopes (the
query string included). A filter on those loggers and the bridge's formats each record, removes
credentials from the text (`bridge.server.auth.redact`: query keys after percent-decoding,
`Authorization` and `Cookie` headers, bearer tokens, JSON credential fields) and from a
traceback, and hands the handler the cleaned text. Frame previews are replaced by their type and
size unless `BRIDGE_LOG_FRAMES=true`, and then they are redacted before they are cut short, so a
cut can never leave half a secret.

A client that repeats one bad frame would otherwise write one line per frame. Lines are limited
per source: the connection named in the record's `extra` (`conn`), or else the logger, the
message template and its first argument (the session id in the bridge's own lines). Each source
may burst, then gets a steady trickle; the next line let through says how many were dropped.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from bridge.server.auth import redact

__all__ = ["LimitRepeats", "RedactSecrets", "install_redaction", "reset_log_limits"]

_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "uvicorn.asgi",
    "websockets.server",
    "websockets.client",
    "bridge",
)
# uvicorn's access formatter reads the request line's parts from `record.args`, so its records
# keep their arguments (each cleaned) instead of being flattened.
_KEEP_ARGS = frozenset({"uvicorn.access"})
# Characters of a frame shown when frame logging is on, counted after redaction.
_FRAME_PREVIEW = 200
_plain = logging.Formatter()


class _Frames:
    """Whether frame contents may be logged (`BRIDGE_LOG_FRAMES`); off unless asked for."""

    enabled = False


def _frame_text(frame: Any) -> str | None:
    """A `websockets` frame as the log may show it; None for anything that is not a frame."""
    try:
        from websockets.frames import Frame, Opcode
    except ImportError:  # pragma: no cover - websockets is a uvicorn[standard] dependency
        return None
    if not isinstance(frame, Frame):
        return None
    size = len(frame.data)
    if frame.opcode is Opcode.CLOSE:
        # Close code and reason: the reasons are the bridge's own words.
        return redact(str(frame))
    if not _Frames.enabled:
        return f"{frame.opcode.name} [{size} bytes]"
    text = redact(bytes(frame.data).decode("utf-8", "replace"))
    if len(text) > _FRAME_PREVIEW:
        text = text[: _FRAME_PREVIEW - 1] + "…"
    return f"{frame.opcode.name} {text!r} [{size} bytes]"


class _Clean:
    """An argument shown through `redact`, whichever of %s and %r the template uses."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __str__(self) -> str:
        frame = _frame_text(self._value)
        return frame if frame is not None else redact(str(self._value))

    def __repr__(self) -> str:
        frame = _frame_text(self._value)
        return frame if frame is not None else redact(repr(self._value))


def _clean(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return redact(value)
    return _Clean(value)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_clean(a) for a in args)
        elif isinstance(args, Mapping):
            record.args = {k: _clean(v) for k, v in args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(_plain.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        if record.name in _KEEP_ARGS:
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
            return True
        # The template and first argument stay known to the repeat limiter after flattening.
        record.bridge_template = str(record.msg)[:200]
        first = args[0] if isinstance(args, tuple) and args else None
        record.bridge_first = first if isinstance(first, (str, int)) else None
        try:
            text = record.getMessage()
        except Exception:  # a broken template: log what can be shown rather than nothing
            text = f"{record.msg} {record.args}"
        # Redacting the whole line catches a secret split between the template and an argument.
        record.msg = redact(text)
        record.args = None
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
        template = getattr(record, "bridge_template", None)
        if template is not None:
            # Flattened by RedactSecrets: keyed as the line was written, not as it reads.
            return (record.name, template, getattr(record, "bridge_first", None))
        first = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if not isinstance(first, (str, int)):
            first = None
        return (record.name, str(record.msg)[:200], first)


_limiter = LimitRepeats()


def reset_log_limits() -> None:
    """Forget every source's count: a test that reads what is logged starts from a full burst."""
    _limiter._sources.clear()


def _bridge_loggers() -> list[str]:
    # A logger's filters see only the records logged on it, not its children's, so every
    # module logger of the bridge that exists by now gets the filters itself.
    known = [n for n in logging.Logger.manager.loggerDict if n.startswith("bridge.")]
    return [*_LOGGERS, *sorted(known)]


def install_redaction(*, log_frames: bool = False) -> None:
    """Add the filters to the loggers that print request lines; safe to call more than once.

    `log_frames` (`BRIDGE_LOG_FRAMES`) lets redacted frame previews through at debug level."""
    _Frames.enabled = log_frames
    for name in _bridge_loggers():
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
        if not any(isinstance(f, LimitRepeats) for f in logger.filters):
            logger.addFilter(_limiter)
