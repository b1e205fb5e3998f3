"""When a failed model step is asked again, and how long to wait first. No I/O, no clock.

A step whose stream broke after it had started (dropped, stalled, cut short, undecodable) is
made again, because the same request very likely succeeds now. Failures before any answer
started (429, 5xx, refused connections, timeouts) are retried by the provider's own client
library on a step's first attempt, so the loop does not multiply those; once a step is being
made again its answer is already owed to the client, and such failures then count against the
same budget. A server's `Retry-After` is honoured when it asks for a longer wait than the
backoff, and a server asking for more than `max_retry_after_s` is taken at its word: the step
fails rather than holding the run that long.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.limits import SessionLimits
from bridge.models.base import ModelError

__all__ = ["DEFAULT_STEP_RETRIES", "StepRetryPolicy", "parse_retry_after"]

# The setting BRIDGE_MODEL_STEP_RETRIES defaults to this.
DEFAULT_STEP_RETRIES = SessionLimits().model_step_retries


@dataclass(frozen=True, slots=True)
class StepRetryPolicy:
    retries: int = DEFAULT_STEP_RETRIES
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0

    def delay_s(self, error: ModelError, retries_done: int, jitter: float) -> float | None:
        """Seconds to wait before making the step again, or None when it must fail now.

        `retries_done` counts the step's retries so far; `jitter` is a uniform draw in [0, 1),
        passed in so that the decision is reproducible in tests.
        """
        if retries_done >= self.retries:
            return None
        if not (error.broken_stream or (retries_done > 0 and error.transient)):
            return None
        backoff = min(self.max_delay_s, self.base_delay_s * 2.0**retries_done)
        # Between half and all of the backoff: sessions broken by the same incident spread
        # their retries out instead of returning to the server in one burst.
        wait = backoff * (0.5 + 0.5 * jitter)
        if error.retry_after_s is not None:
            if error.retry_after_s > self.max_retry_after_s:
                return None
            wait = max(wait, error.retry_after_s)
        return wait


def parse_retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """The wait a server asked for, in seconds: `retry-after-ms` (OpenAI's, more precise) or
    `retry-after` in seconds or as an HTTP date, measured from `now` (Unix time)."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
        return max(0.0, seconds)
    return seconds if seconds >= 0 else None
