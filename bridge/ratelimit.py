"""Token buckets for what one client may send and start, with no I/O: the clock is passed in.

A connection spends from two buckets per frame, one counted in frames and one in bytes. A frame
the buckets cannot pay for is refused, and its cost is still taken: the debt grows while the
client keeps sending over the rate, and once it is as deep as the burst the client has ignored
the refusal for a whole burst and is closed. A client that backs off pays the debt back at the
refill rate and is admitted again.

Per client address, `AddressGate` decides whether a new connection may open (`open`), and meters
new sessions. A connection is refused when its address has too many open, connects faster than
its connection bucket allows, or still owes for a flood: a connection that ends in debt leaves
its buckets with its address, and the next connection from there starts from them instead of a
fresh burst, so closing and reconnecting does not wipe the slate. Only debt is carried: clients
that keep within the rate never share buckets, however many of them one address holds.
Addresses whose buckets have refilled are forgotten, oldest first, so the gate's memory follows
the addresses active in the last refill period. IPv6 addresses count per /64, the block one host
is usually given, as a host can pick any address inside it.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from bridge.limits import ConnectionLimits

__all__ = ["AddressGate", "Admission", "FloodGuard", "TokenBucket", "Verdict", "address_key"]

Clock = Callable[[], float]
_Refills = TypeVar("_Refills")


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

    def owed_s(self) -> float:
        """Seconds from now until the debt is paid (0 when not in debt)."""
        tokens = self.refill()
        if tokens >= 0:
            return 0.0
        return -tokens / self.rate if self.rate > 0 else float("inf")


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

    def owed_s(self) -> float:
        """Seconds until both buckets are out of debt: how long a refused client should wait."""
        return max(self._frames.owed_s(), self._bytes.owed_s())

    def full_after(self) -> float:
        return max(self._frames.full_after(), self._bytes.full_after())


@dataclass(frozen=True, slots=True)
class Admission:
    """`AddressGate.open`'s answer: the connection's buckets, or why it is refused."""

    address: str
    flood: FloodGuard | None
    refusal: str = ""
    retry_after_s: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.flood is not None


def address_key(host: str) -> str:
    """The unit the per-address limits count: the address, or its /64 for IPv6."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class AddressGate:
    """Open connections, new connections and new sessions per client address."""

    def __init__(
        self,
        *,
        max_connections: int,
        new_sessions_per_minute: float,
        new_connections_per_s: float = math.inf,
        burst_connections: float = math.inf,
        flood: ConnectionLimits | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._max_connections = max_connections
        self._session_rate = new_sessions_per_minute / 60.0
        self._session_burst = max(1.0, new_sessions_per_minute)
        self._connection_rate = new_connections_per_s
        self._connection_burst = max(1.0, burst_connections)
        self._flood_limits = flood or ConnectionLimits()
        self._clock = clock
        self._open: dict[str, int] = {}
        # Least recently used first, so forgetting refilled buckets looks only at the front.
        self._sessions: OrderedDict[str, tuple[TokenBucket, float]] = OrderedDict()
        self._connects: OrderedDict[str, tuple[TokenBucket, float]] = OrderedDict()
        # Buckets left in debt by a closed connection, until they are full again.
        self._owing: OrderedDict[str, tuple[FloodGuard, float]] = OrderedDict()

    @classmethod
    def from_limits(cls, limits: ConnectionLimits, clock: Clock = time.monotonic) -> AddressGate:
        return cls(
            max_connections=limits.max_connections_per_address,
            new_sessions_per_minute=limits.max_new_sessions_per_minute,
            new_connections_per_s=limits.new_connections_per_s,
            burst_connections=limits.burst_connections,
            flood=limits,
            clock=clock,
        )

    def open(self, host: str) -> Admission:
        """Admit a new connection from `host` with its buckets, or say why not.

        An admitted connection is counted until `close(admission)`; a refused one is not. The
        refusal says when to come back (`retry_after_s`)."""
        address = address_key(host)
        now = self._clock()
        if math.isfinite(self._connection_rate):
            connects = self._take(self._connects, address, self._connection_rate, now)
            if connects is not None:
                return Admission(address, None, "connecting too often from this address", connects)
        carried = self._owing.get(address)
        if carried is not None:
            owed = carried[0].owed_s()
            if owed > 0:
                return Admission(address, None, "this address is over its rate limit", owed)
        count = self._open.get(address, 0)
        if count >= self._max_connections:
            return Admission(address, None, "too many connections from this address", 1.0)
        self._open[address] = count + 1
        if carried is not None:
            # The next connection goes on from where the last one left off, debt repaid but
            # the burst not yet refilled.
            del self._owing[address]
            return Admission(address, carried[0])
        return Admission(address, self._new_guard())

    def close(self, admission: Admission | str) -> None:
        """The connection is gone; buckets it left in debt stay with its address."""
        if isinstance(admission, str):
            address, flood = address_key(admission), None
        else:
            address, flood = admission.address, admission.flood
        count = self._open.get(address, 0) - 1
        if count > 0:
            self._open[address] = count
        else:
            self._open.pop(address, None)
        if flood is None or flood.owed_s() <= 0:
            return
        self._forget(self._owing)
        held = self._owing.pop(address, None)
        if held is not None and held[0].owed_s() > flood.owed_s():
            flood = held[0]
        self._owing[address] = (flood, self._clock() + flood.full_after())

    def open_connections(self, host: str) -> int:
        return self._open.get(address_key(host), 0)

    def take_new_session(self, host: str) -> bool:
        wait = self._take(self._sessions, address_key(host), self._session_rate, self._clock())
        return wait is None

    def give_back_session(self, host: str) -> None:
        entry = self._sessions.get(address_key(host))
        if entry is not None:
            entry[0].give_back()

    def _new_guard(self) -> FloodGuard:
        limits = self._flood_limits
        return FloodGuard(
            frames_per_s=limits.frames_per_s,
            burst_frames=limits.burst_frames,
            bytes_per_s=limits.bytes_per_s,
            burst_bytes=limits.burst_bytes,
            clock=self._clock,
        )

    def _take(
        self,
        table: OrderedDict[str, tuple[TokenBucket, float]],
        address: str,
        rate: float,
        now: float,
    ) -> float | None:
        """Spend one token of `address`'s bucket in `table`: None, or seconds until one is due."""
        self._forget(table)
        entry = table.pop(address, None)
        if entry is not None:
            bucket = entry[0]
        else:
            burst = self._session_burst if table is self._sessions else self._connection_burst
            bucket = TokenBucket(rate, burst, self._clock)
        taken = bucket.try_take()
        table[address] = (bucket, now + bucket.full_after())
        if taken:
            return None
        return (1 - bucket.tokens) / rate if rate > 0 else math.inf

    def _forget(self, table: OrderedDict[str, tuple[_Refills, float]]) -> None:
        now = self._clock()
        while table:
            address, (_bucket, full_at) = next(iter(table.items()))
            if full_at > now:
                break
            del table[address]

    def __len__(self) -> int:
        return len(self._sessions)
