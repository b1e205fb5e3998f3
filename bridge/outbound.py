"""The session's outbound log: `seq`, the replay window and token coalescing, with no I/O.

Every server message of a session is pushed here and gets its `seq`. The attached connection
takes frames in order from its cursor; a client that comes back names the last `seq` it
processed and the cursor is set there, so the same frames are sent again, identical. Frames
stay in a window bounded in messages and bytes; beyond it a returning client gets a snapshot
instead (the session decides that, not this module).

Tokens of one run join the last unsent token frame while nobody is reading or the reader is
stuck in a send: a slow or absent client costs a few large frames, not a queue of tiny ones.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Collection, Mapping, Sequence
from itertools import islice
from json.encoder import encode_basestring as _quoted
from typing import Any

from pydantic import BaseModel

from bridge.wire import dump_server_message

__all__ = ["OutboundLog", "token_frame"]

# A coalesced token frame stops growing here, so one frame never holds a whole answer.
COALESCE_MAX_CHARS = 4096


def utf8_size(text: str) -> int:
    """Bytes of `text` on the wire; frames are mostly ASCII, which needs no encoding to count."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


class _OpenTokens:
    """The newest frame while it is a token frame that may still grow; frozen to a string when
    a reader takes it, when anything else is pushed, or when the record is dumped."""

    __slots__ = ("parts", "run_id", "seq", "size")

    def __init__(self, seq: int, run_id: str, text: str) -> None:
        self.seq = seq
        self.run_id = run_id
        self.parts = [text]
        # Counted by its text plus room for the envelope around it until it is written.
        self.size = utf8_size(text) + 64


# A lone surrogate cannot be encoded for the socket; the model's text is cleaned like any other.
_SURROGATE = re.compile("[\ud800-\udfff]")


def token_frame(seq: int, run_id: str, content: str) -> str:
    """The `token` frame, written directly: it is the one message sent thousands of times a
    second, and building a model to dump it cost as much as the rest of the frame's way out
    (the same JSON as `dump_server_message` would give; a test holds them equal)."""
    if not content.isascii():
        content = _SURROGATE.sub("\ufffd", content)
    return f'{{"seq":{seq},"type":"token","run_id":{_quoted(run_id)},"content":{_quoted(content)}}}'


class OutboundLog:
    """Frames are kept as plain strings, their seqs implied by their place (consecutive from
    `first_seq`): a window of thousands of frames in each of thousands of sessions then holds
    no object the garbage collector has to visit."""

    def __init__(
        self,
        *,
        max_messages: int,
        max_bytes: int,
        coalesce_max_chars: int = COALESCE_MAX_CHARS,
    ) -> None:
        self._max_messages = max(1, max_messages)
        self._max_bytes = max_bytes
        self._coalesce_max = coalesce_max_chars
        self._frames: deque[str] = deque()
        # The seq of `_frames[0]` (of the open token frame when `_frames` is empty).
        self._first = 1
        self._open: _OpenTokens | None = None
        self._bytes = 0
        self._seq = 0
        # The last seq handed to the attached reader; None while no connection is attached.
        self.cursor: int | None = None
        # While no reader is attached: the last seq the departed reader took. What came after
        # is what it will ask for when it returns, so it is kept even past the bounds (tokens
        # wait at the bound; only control messages, a step's worth at most, go beyond it).
        self._held_after: int | None = None
        # Set by the connection while a write is suspended: the client is not keeping up.
        self.reader_busy = False
        # An unsent frame had to leave the window while a reader was attached: it fell behind
        # further than the window holds, and its stream can no longer be complete.
        self.overflowed = False

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def first_seq(self) -> int:
        """The oldest seq still in the window (last_seq + 1 when the window is empty)."""
        return self._first if len(self) else self._seq + 1

    def __len__(self) -> int:
        return len(self._frames) + (self._open is not None)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return len(self) >= self._max_messages or self._bytes >= self._max_bytes

    @property
    def backlog(self) -> int:
        """Frames the attached reader has not taken yet (0 with no reader)."""
        return 0 if self.cursor is None else self._seq - self.cursor

    # Writing -----------------------------------------------------------------------------------

    def push(self, message: BaseModel) -> int:
        """Number, serialise and keep a message; return its seq.

        The frame is built before the seq is taken, so a message that cannot be serialised
        raises here and leaves no hole in the numbering.
        """
        seq = self._seq + 1
        message.seq = seq  # type: ignore[attr-defined]
        frame = dump_server_message(message)
        self._freeze()
        self._seq = seq
        self._keep(frame)
        return seq

    def push_token(self, run_id: str, text: str) -> None:
        open_ = self._open
        if (
            open_ is not None
            and open_.run_id == run_id
            and (self.cursor is None or self.reader_busy)
            and open_.size + len(text) <= self._coalesce_max + 64
        ):
            open_.parts.append(text)
            grown = utf8_size(text)
            open_.size += grown
            self._bytes += grown
            self._trim()
            return
        self._freeze()
        self._seq += 1
        if not len(self):
            self._first = self._seq
        self._open = _OpenTokens(self._seq, run_id, text)
        self._bytes += self._open.size
        self._trim()

    def _keep(self, frame: str) -> None:
        if not len(self):
            self._first = self._seq
        self._frames.append(frame)
        self._bytes += utf8_size(frame)
        self._trim()

    def _freeze(self) -> None:
        """Write the open token frame out: it stops growing and is counted exactly."""
        open_ = self._open
        if open_ is None:
            return
        self._open = None
        frame = token_frame(open_.seq, open_.run_id, "".join(open_.parts))
        self._frames.append(frame)
        self._bytes += utf8_size(frame) - open_.size

    def _trim(self) -> None:
        frames = self._frames
        while (
            frames
            and len(self) > 1
            and (len(self) > self._max_messages or self._bytes > self._max_bytes)
        ):
            if self._held_after is not None and self._first > self._held_after:
                return
            self._bytes -= utf8_size(frames.popleft())
            if self.cursor is not None and self._first > self.cursor:
                self.overflowed = True
            self._first += 1

    # Reading -----------------------------------------------------------------------------------

    def covers(self, after_seq: int) -> bool:
        """Whether every message after `after_seq` is still in the window."""
        return 0 <= after_seq <= self._seq and after_seq + 1 >= self.first_seq

    def attach(self, after_seq: int | None = None) -> None:
        """A reader starts after `after_seq` (which the caller checked with `covers`), or at the
        head: only what is pushed from now on."""
        self.cursor = self._seq if after_seq is None else after_seq
        self.reader_busy = False
        self.overflowed = False
        self._held_after = None
        self._trim()

    def detach(self) -> None:
        self._held_after = self.cursor
        self.cursor = None
        self.reader_busy = False

    def take(self) -> str | None:
        """The next frame for the attached reader, or None when it has everything."""
        if self.cursor is None or self.cursor >= self._seq:
            return None
        wanted = max(self.cursor + 1, self.first_seq)
        if self._open is not None and wanted == self._open.seq:
            self._freeze()
        self.cursor = wanted
        return self._frames[wanted - self._first]

    # Record ------------------------------------------------------------------------------------

    def frames(self) -> Collection[str]:
        """The window's frames, oldest first (the open token frame written out: it is final
        from here on), consecutive from `first_seq` to `last_seq`."""
        self._freeze()
        return self._frames

    def dump(self) -> dict[str, Any]:
        self._freeze()
        return {
            "seq": self._seq,
            "frames": [[self._first + i, frame] for i, frame in enumerate(self._frames)],
        }

    def load(self, data: Mapping[str, Any]) -> None:
        self._frames.clear()
        self._open = None
        self._bytes = 0
        self._seq = data["seq"]
        frames = data["frames"]
        self._first = frames[0][0] if frames else self._seq + 1
        texts = [frame for _seq, frame in frames]
        self._frames.extend(texts)
        self._bytes = sum(map(utf8_size, texts))

    def carry_on(self, earlier: Sequence[str], size: int, dropped: int, new: list[str]) -> None:
        """Take an earlier copy's frames (`size` bytes in all) but the `dropped` oldest, then
        `new`, the newest at the loaded last seq: sized from the copy's size, not frame by
        frame (a session put together from a copy this worker kept)."""
        self._frames.clear()
        self._open = None
        self._frames.extend(islice(earlier, dropped, None))
        self._frames.extend(new)
        gone = sum(map(utf8_size, islice(earlier, dropped)))
        self._bytes = size - gone + sum(map(utf8_size, new))
        self._first = self._seq - len(self._frames) + 1
