"""Log hygiene: secrets in query strings never reach a log line."""

from __future__ import annotations

import logging

from bridge.server.auth import redact

__all__ = ["RedactSecrets", "install_redaction"]

_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "bridge")


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_redaction() -> None:
    """Add the filter to the loggers that print request lines; safe to call more than once."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
