"""Token buckets for what one client may send and start, with no I/O: the clock is passed in.

A connection spends from two buckets per frame, one counted in frames and one in bytes. A frame
the buckets cannot pay for is refused, and its cost is still taken: the debt grows while the
client keeps sending over the rate, and once it is as deep as the burst the client has ignored
the refusal for a whole burst and is closed. A client that backs off pays the debt back at the
refill rate and is admitted again.

Per client address, `AddressGate` counts open connections and meters new sessions with a bucket
per address; addresses whose bucket has refilled are forgotten, oldest first, so its memory
follows the addresses active in the last refill period.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from enum import Enum

__all__ = ["AddressGate", "FloodGuard", "TokenBucket", "Verdict"]

Clock = Callable[[], float]


class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; `tokens` goes negative while in debt."""

    __slots__ = ("_clock", "_last", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self._last = clock()

    def refill(self) -> float:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        return self.tokens

    def try_take(self, cost: float = 1.0) -> bool:
        if self.refill() >= cost:
            self.tokens -= cost
            return True
        return False

    def give_back(self, cost: float = 1.0) -> None:
        self.tokens = min(self.burst, self.tokens + cost)

    def full_after(self) -> float:
        """Seconds from the last use until the bucket is full again."""
        return (self.burst - self.tokens) / self.rate if self.rate > 0 else float("inf")


class Verdict(Enum):
    ADMIT = "admit"
    # The first refusal of a run of refusals: the client is told once, not once per frame.
    REFUSE_AND_TELL = "refuse_and_tell"
    REFUSE = "refuse"
    CLOSE = "close"


class FloodGuard:
    """The frame and byte buckets of one connection."""

    def __init__(
        self,
        *,
        frames_per_s: float,
        burst_frames: float,
        bytes_per_s: float,
        burst_bytes: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._frames = TokenBucket(frames_per_s, burst_frames, clock)
        self._bytes = TokenBucket(bytes_per_s, burst_bytes, clock)
        self._refusing = False

    def admit(self, size: int) -> Verdict:
        frames, data = self._frames, self._bytes
        if frames.refill() >= 1 and data.refill() >= size:
            frames.tokens -= 1
            data.tokens -= size
            self._refusing = False
            return Verdict.ADMIT
        frames.tokens -= 1
        data.tokens -= size
        if frames.tokens < -frames.burst or data.tokens < -data.burst:
            return Verdict.CLOSE
        if self._refusing:
            return Verdict.REFUSE
        self._refusing = True
        return Verdict.REFUSE_AND_TELL


class AddressGate:
    """Open connections and new sessions per client address."""

    def __init__(
        self,
        *,
        max_connections: int,
        new_sessions_per_minute: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._max_connections = max_connections
        self._session_rate = new_sessions_per_minute / 60.0
        self._session_burst = max(1.0, new_sessions_per_minute)
        self._clock = clock
        self._open: dict[str, int] = {}
        # Least recently used first, so forgetting refilled buckets looks only at the front.
        self._sessions: OrderedDict[str, tuple[TokenBucket, float]] = OrderedDict()

    def open(self, address: str) -> bool:
        """Count a new connection from `address`, or refuse it (nothing is counted then)."""
        count = self._open.get(address, 0)
        if count >= self._max_connections:
            return False
        self._open[address] = count + 1
        return True

    def close(self, address: str) -> None:
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)

    def open_connections(self, address: str) -> int:
        return self._open.get(address, 0)

    def take_new_session(self, address: str) -> bool:
        self._forget_refilled()
        entry = self._sessions.pop(address, None)
        bucket = (
            entry[0]
            if entry is not None
            else TokenBucket(self._session_rate, self._session_burst, self._clock)
        )
        taken = bucket.try_take()
        self._sessions[address] = (bucket, self._clock() + bucket.full_after())
        return taken

    def give_back_session(self, address: str) -> None:
        entry = self._sessions.get(address)
        if entry is not None:
            entry[0].give_back()

    def _forget_refilled(self) -> None:
        now = self._clock()
        sessions = self._sessions
        while sessions:
            address, (_bucket, full_at) = next(iter(sessions.items()))
            if full_at > now:
                break
            del sessions[address]

    def __len__(self) -> int:
        return len(self._sessions)
