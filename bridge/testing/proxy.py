"""A fault-injecting TCP proxy, for testing that clients and the server survive bad networks.

    async with FaultProxy(server.host, server.port) as proxy:
        client = BridgeClient(proxy.ws_url("session-1"))
        proxy.cut_on(b'"tool_result"', "down")        # the client never sees the result
        proxy.random_cuts(mean_bytes=20_000, seed=7)  # every later connection dies somewhere

It listens on a free loopback port and forwards each connection to the upstream server over
real TCP, bytes in order, never duplicated or reordered. "up" is client to server, "down" server
to client. Faults apply to one `ProxyConnection` or, on the proxy, to every connection open now
(armed cuts, `cut_at` and `cut_on`, also watch later ones; each fires once):

- `cut()`: both sockets are reset at once (SO_LINGER 0, so the peers get RST and no close
  frame); whatever a peer sent that was not forwarded yet is lost.
- `cut_at(n, direction)`: exactly `n` more bytes go that way (counted from the call, over the
  connections it watches), then the cut.
- `cut_on(pattern, direction, where=...)`: matched on the raw bytes of that direction.
  "before": the bytes before the pattern go through and the pattern never does, so the frame
  holding it never completes at the peer. "after": the whole read in which the pattern
  completed goes through, then the cut (a peer that writes a small frame in one send has it
  delivered whole). "after_reply": the read goes through, then the cut comes right after the
  next read in the other direction has been forwarded: "cut right after the client answered".
  Server frames are unmasked, so patterns work "down" (without permessage-deflate); client
  frames are masked, so "up" patterns only work for plain TCP: use byte counts or "after_reply"
  on the server's frame to cut the client's side.
- `random_cuts(mean_bytes, seed=...)`: each connection accepted later draws from one seeded
  `random.Random` a cut point in each direction (exponential, mean about `mean_bytes`); the
  first one reached cuts. Same seed and same traffic, same cuts (see `cut_log`).
- `stall(direction=None)` / `resume(direction=None)`: stop reading and forwarding (at most one
  read is held, so the sender meets TCP backpressure), then go on with every byte in order.
- `half_open()`: stall both ways for good, never close, pass no close on: the peers hear silence.

`cut_log`, `accepted`, `bytes_up`, `bytes_down`, `cuts` count what happened; leaving the
`async with` closes every socket and ends every task within `timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["CutRecord", "Direction", "FaultProxy", "ProxyConnection", "Trigger", "Where"]

Direction = Literal["up", "down"]
Where = Literal["before", "after", "after_reply"]
_DIRECTIONS: tuple[Direction, Direction] = ("up", "down")
_CHUNK = 65_536
# Patterns may straddle two reads; this much of each direction is kept to find them.
_TAIL = 1024


@dataclass(frozen=True, slots=True)
class CutRecord:
    """One injected cut: which connection, why, and how far each direction had got."""

    connection: int
    reason: str
    bytes_up: int
    bytes_down: int


class Trigger:
    """An armed, one-shot cut. `await trigger.wait()` returns its record once it has cut."""

    def __init__(self, direction: Direction, nbytes: int | None, pattern: bytes, where: Where):
        self.direction, self.pattern, self.where = direction, pattern, where
        self.reason = f"bytes {direction}" if nbytes is not None else f"pattern {direction} {where}"
        self.record: CutRecord | None = None
        self.fired = asyncio.Event()
        self.spent = False
        self._remaining = nbytes

    async def wait(self, timeout_s: float = 10.0) -> CutRecord:
        async with asyncio.timeout(timeout_s):
            await self.fired.wait()
        assert self.record is not None
        return self.record

    def _position(self, window: bytes, base: int, size: int) -> int | None:
        """How many bytes of this read go through before the cut, or None for no cut here."""
        if self._remaining is not None:
            return self._remaining if self._remaining <= size else None
        found = self._find(window, base)
        if found < 0 or self.where == "after_reply":
            return None
        return size if self.where == "after" else max(0, found - base)

    def _find(self, window: bytes, base: int) -> int:
        return window.find(self.pattern, max(0, base - len(self.pattern) + 1))


class _Controls:
    """Fault controls shared by one connection and the whole proxy."""

    _triggers: list[Trigger]

    def _targets(self) -> Iterable[ProxyConnection]:
        raise NotImplementedError

    def cut(self) -> None:
        for connection in list(self._targets()):
            connection._cut("manual")

    def stall(self, direction: Direction | None = None) -> None:
        for connection in self._targets():
            connection._gate(direction, opened=False)

    def resume(self, direction: Direction | None = None) -> None:
        for connection in self._targets():
            connection._gate(direction, opened=True)

    def half_open(self) -> None:
        for connection in self._targets():
            connection._half_open = True
            connection._gate(None, opened=False)

    def cut_at(self, nbytes: int, direction: Direction) -> Trigger:
        if nbytes < 0:
            raise ValueError("nbytes must be >= 0")
        self._triggers.append(Trigger(direction, nbytes, b"", "before"))
        return self._triggers[-1]

    def cut_on(
        self, pattern: bytes, direction: Direction = "down", *, where: Where = "before"
    ) -> Trigger:
        if not 0 < len(pattern) <= _TAIL:
            raise ValueError(f"pattern must be 1 to {_TAIL} bytes")
        self._triggers.append(Trigger(direction, None, pattern, where))
        return self._triggers[-1]


class ProxyConnection(_Controls):
    """One client connection and its upstream twin."""

    def __init__(self, proxy: FaultProxy, index: int, client: socket.socket) -> None:
        self.index = index
        self.bytes_up = self.bytes_down = 0
        self.closed = asyncio.Event()
        self._proxy, self._client_sock = proxy, client
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._triggers = []
        self._half_open = self._done = False
        self._gates = {d: asyncio.Event() for d in _DIRECTIONS}
        self._gate(None, opened=True)
        self._tail = {d: b"" for d in _DIRECTIONS}
        self._reply_cut: dict[Direction, Trigger | None] = {"up": None, "down": None}
        self._random_at: dict[Direction, int] = {}
        self._moved = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def _targets(self) -> Iterable[ProxyConnection]:
        return [self]

    def _sent(self, direction: Direction) -> int:
        return self.bytes_up if direction == "up" else self.bytes_down

    async def wait_forwarded(
        self, direction: Direction, at_least: int, timeout_s: float = 10.0
    ) -> None:
        """Wait until `at_least` bytes have gone `direction` on this connection."""
        async with asyncio.timeout(timeout_s):
            while self._sent(direction) < at_least:
                self._moved.clear()
                await self._moved.wait()

    def _gate(self, direction: Direction | None, *, opened: bool) -> None:
        for d in _DIRECTIONS if direction is None else (direction,):
            if not opened:
                self._gates[d].clear()
            elif not self._half_open:
                self._gates[d].set()

    async def _run(self) -> None:
        reset = True
        try:
            reader, writer = await asyncio.open_connection(sock=self._client_sock)
            self._writers.append(writer)
            async with asyncio.timeout(self._proxy.timeout_s):
                up_reader, up_writer = await asyncio.open_connection(*self._proxy.upstream)
            self._writers.append(up_writer)
            if self._done:
                return
            self._pumps = [
                asyncio.create_task(self._pump("up", reader, up_writer)),
                asyncio.create_task(self._pump("down", up_reader, writer)),
            ]
            await asyncio.gather(*self._pumps, return_exceptions=True)
            # Both ways ended with EOF, already passed on and flushed: nothing left to reset.
            reset = False
        except (OSError, TimeoutError):
            pass
        finally:
            self._abort(reset=reset)
            self.closed.set()

    async def _pump(
        self, direction: Direction, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        gate = self._gates[direction]
        try:
            while True:
                await gate.wait()
                data = await reader.read(_CHUNK)
                # A stall set while the read was pending holds this read, EOF included.
                await gate.wait()
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                keep, firing = self._plan(direction, data)
                if keep:
                    writer.write(data[:keep])
                    self._forwarded(direction, data[:keep])
                if firing is None:
                    await writer.drain()
                    firing = self._reply_cut[direction]
                if firing is not None:
                    # Flush what was let through, so the cut lands exactly where promised.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._proxy.timeout_s):
                            await writer.drain()
                    self._cut(firing)
                    return
        except OSError:
            # A peer reset its side: the other peer learns it the same way.
            self._abort(reset=True)

    def _plan(self, direction: Direction, data: bytes) -> tuple[int, Trigger | None]:
        """How much of this read to forward, and the trigger that cuts after it, if any."""
        window = self._tail[direction] + data
        base = len(self._tail[direction])
        keep, firing = len(data), None
        armed = self._triggers + self._proxy._triggers
        watching = [t for t in armed if t.direction == direction and not t.spent]
        candidates = list(watching)
        at = self._random_at.get(direction)
        if at is not None:
            # A random point is a private byte-count trigger made on the spot.
            candidates.append(Trigger(direction, max(0, at - self._sent(direction)), b"", "before"))
            candidates[-1].reason = f"random {direction}"
        for trigger in candidates:
            pos = trigger._position(window, base, len(data))
            if pos is not None and (firing is None or pos < keep):
                keep, firing = pos, trigger
        for trigger in watching:
            if trigger._remaining is not None and trigger is not firing:
                trigger._remaining -= keep
        if firing is not None:
            firing.spent = True
        else:
            other: Direction = "down" if direction == "up" else "up"
            for trigger in watching:
                if trigger.where == "after_reply" and trigger._find(window, base) >= 0:
                    trigger.spent = True
                    self._reply_cut[other] = trigger
                    break
        return keep, firing

    def _forwarded(self, direction: Direction, data: bytes) -> None:
        for owner in (self, self._proxy):
            name = f"bytes_{direction}"
            setattr(owner, name, getattr(owner, name) + len(data))
        self._tail[direction] = (self._tail[direction] + data)[-_TAIL:]
        self._moved.set()

    def _cut(self, why: Trigger | str) -> None:
        if self._done:
            return
        reason = why if isinstance(why, str) else why.reason
        record = CutRecord(self.index, reason, self.bytes_up, self.bytes_down)
        self._proxy.cut_log.append(record)
        if isinstance(why, Trigger):
            why.record = record
            why.fired.set()
        self._abort(reset=True)

    def _abort(self, *, reset: bool) -> None:
        self._done = True
        for sock in [self._client_sock] + [w.get_extra_info("socket") for w in self._writers]:
            if reset and sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for w in self._writers:
            w.transport.abort()
        if not self._writers:
            self._client_sock.close()
        current = asyncio.current_task()
        for pump in self._pumps:
            if pump is not current:
                pump.cancel()


class FaultProxy(_Controls):
    """`async with FaultProxy(host, port) as proxy:` forwards `proxy.port` to `host:port`."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        host: str = "127.0.0.1",
        timeout_s: float = 5.0,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host, self.port = host, 0
        # Bounds connecting upstream, flushing before a cut, and closing.
        self.timeout_s = timeout_s
        self.connections: list[ProxyConnection] = []
        self.cut_log: list[CutRecord] = []
        self.bytes_up = self.bytes_down = 0
        self._triggers = []
        self._rng: random.Random | None = None
        self._mean, self._min = 0.0, 0
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._accepted = asyncio.Event()

    @property
    def accepted(self) -> int:
        return len(self.connections)

    @property
    def cuts(self) -> int:
        return len(self.cut_log)

    def ws_url(self, path_or_session: str) -> str:
        """A path ("/ws/agent/x") as is; anything else is a session id on the bridge's route."""
        path = path_or_session
        return f"ws://{self.host}:{self.port}{'' if path.startswith('/') else '/ws/agent/'}{path}"

    def _targets(self) -> Iterable[ProxyConnection]:
        return [c for c in self.connections if not c.closed.is_set()]

    def random_cuts(self, mean_bytes: float | None, *, seed: int = 0, min_bytes: int = 0) -> None:
        """Give every connection accepted from now on a random cut point in each direction,
        `min_bytes` plus an exponential draw of mean `mean_bytes`; None stops it."""
        self._rng = None if mean_bytes is None else random.Random(seed)
        self._mean, self._min = mean_bytes or 0.0, min_bytes

    async def connection(self, index: int, *, timeout_s: float = 10.0) -> ProxyConnection:
        """The `index`-th accepted connection (from 0), once it has been accepted."""
        async with asyncio.timeout(timeout_s):
            while len(self.connections) <= index:
                self._accepted.clear()
                await self._accepted.wait()
        return self.connections[index]

    async def __aenter__(self) -> FaultProxy:
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(512)
        listener.setblocking(False)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._accepting = asyncio.create_task(self._accept(listener))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting, close every connection, and wait (bounded) for every task to end."""
        tasks: list[asyncio.Task[None]] = []
        if self._accepting is not None:
            self._accepting.cancel()
            tasks.append(self._accepting)
        if self._listener is not None:
            self._listener.close()
        for connection in self.connections:
            connection._abort(reset=False)
            if connection.task is not None:
                connection.task.cancel()
                tasks.append(connection.task)
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout_s)

    async def _accept(self, listener: socket.socket) -> None:
        while True:
            sock, _ = await asyncio.get_running_loop().sock_accept(listener)
            # Accepted this way a socket reports protocol 0, so asyncio would leave Nagle on and
            # small frames would wait for the peer's delayed ACK (about 40 ms each).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            connection = ProxyConnection(self, len(self.connections), sock)
            if self._rng is not None:
                for d in _DIRECTIONS:
                    draw = self._rng.expovariate(1.0 / self._mean)
                    connection._random_at[d] = self._min + 1 + int(draw)
            self.connections.append(connection)
            connection.task = asyncio.create_task(connection._run())
            self._accepted.set()
