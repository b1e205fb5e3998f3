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

`logging_config` is what `agent-bridge serve` hands uvicorn: uvicorn's loggers and the `bridge`
loggers at the operator's level, in text or as one JSON object per line. Its handlers carry the
redaction filter as well, so a module logger created after `install_redaction` ran (whose own
filters would be empty) still cannot print a secret.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from datetime import UTC, datetime
from typing import Any

from bridge.server.auth import redact

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "JsonFormatter",
    "LimitRepeats",
    "RedactSecrets",
    "install_redaction",
    "logging_config",
    "reset_log_limits",
]

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


# The levels uvicorn understands, by the names `--log-level` takes (uvicorn's "trace" is 5).
LOG_LEVELS = {"critical": 50, "error": 40, "warning": 30, "info": 20, "debug": 10, "trace": 5}
LOG_FORMATS = ("text", "json")

# What every record has: anything else on a record came from `extra=` and is a field of its own.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    # uvicorn's copy of the template with terminal colours, and the limiter's bookkeeping.
    "color_message",
    "bridge_template",
    "bridge_first",
}


def _field(value: Any) -> Any:
    """An `extra` value as JSON can carry it, with credentials taken out of any text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(value if isinstance(value, str) else str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every `extra` field.

    The message arrives already redacted (`RedactSecrets` runs before any formatter); the
    fields are redacted here, since the filter only flattens the message."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = _field(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(self.formatException(record.exc_info))
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """A `logging.config.dictConfig` for `uvicorn.run(log_config=...)`.

    Text keeps uvicorn's own layout (its access lines on stdout, the rest on stderr) and adds
    the `bridge` loggers, named, on stderr. JSON puts every line of both on stderr. uvicorn
    sets its loggers' levels from `log_level` itself; the `bridge` level is set here."""
    if level not in LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not one of {', '.join(LOG_LEVELS)}")
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format {fmt!r} is not one of {', '.join(LOG_FORMATS)}")
    redacting = {"redact": {"()": "bridge.server.logs.RedactSecrets"}}
    numeric = LOG_LEVELS[level]
    if fmt == "json":
        handler = {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "json",
            "filters": ["redact"],
        }
        return {
            "version": 1,
            "disable_existing_loggers": False,
            "filters": redacting,
            "formatters": {"json": {"()": "bridge.server.logs.JsonFormatter"}},
            "handlers": {"json": handler},
            "loggers": {
                "uvicorn": {"handlers": ["json"], "level": numeric, "propagate": False},
                "uvicorn.error": {"level": numeric},
                "uvicorn.access": {"handlers": ["json"], "level": numeric, "propagate": False},
                "bridge": {"handlers": ["json"], "level": numeric, "propagate": False},
            },
        }
    # Colours off: uvicorn's coloured copy of a template would bypass the flattened, redacted
    # message.
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": redacting,
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(message)s",
                "use_colors": False,
            },
            "bridge": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": "%(levelprefix)s %(name)s: %(message)s",
                "use_colors": False,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s',
                "use_colors": False,
            },
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["redact"],
            },
            "bridge": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "bridge",
                "filters": ["redact"],
            },
            "access": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "access",
                "filters": ["redact"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": numeric, "propagate": False},
            "uvicorn.error": {"level": numeric},
            "uvicorn.access": {"handlers": ["access"], "level": numeric, "propagate": False},
            "bridge": {"handlers": ["bridge"], "level": numeric, "propagate": False},
        },
    }
