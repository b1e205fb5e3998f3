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
from collections.abc import Mapping
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


class _Entry:
    __slots__ = ("frame", "parts", "run_id", "seq", "size")

    def __init__(self, seq: int, frame: str | None, run_id: str = "", text: str = "") -> None:
        self.seq = seq
        self.frame = frame
        self.run_id = run_id
        self.parts = [text] if frame is None else []
        # An open token frame is counted by its text plus room for the envelope around it.
        self.size = utf8_size(frame) if frame is not None else utf8_size(text) + 64

    def text(self) -> str:
        if self.frame is None:
            self.frame = token_frame(self.seq, self.run_id, "".join(self.parts))
            self.parts = []
            self.size = utf8_size(self.frame)
        return self.frame


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
        self._entries: deque[_Entry] = deque()
        self._bytes = 0
        self._seq = 0
        self._open_tokens: _Entry | None = None
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
        return self._entries[0].seq if self._entries else self._seq + 1

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        return len(self._entries) >= self._max_messages or self._bytes >= self._max_bytes

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
        self._seq = seq
        self._open_tokens = None
        self._append(_Entry(seq, frame))
        return seq

    def push_token(self, run_id: str, text: str) -> None:
        entry = self._open_tokens
        if (
            entry is not None
            and entry.frame is None
            and entry.run_id == run_id
            and (self.cursor is None or self.reader_busy)
            and entry.size + len(text) <= self._coalesce_max + 64
        ):
            entry.parts.append(text)
            grown = utf8_size(text)
            entry.size += grown
            self._bytes += grown
            self._trim()
            return
        self._seq += 1
        entry = _Entry(self._seq, None, run_id, text)
        self._open_tokens = entry
        self._append(entry)

    def _append(self, entry: _Entry) -> None:
        self._entries.append(entry)
        self._bytes += entry.size
        self._trim()

    def _trim(self) -> None:
        entries = self._entries
        while len(entries) > 1 and (
            len(entries) > self._max_messages or self._bytes > self._max_bytes
        ):
            if self._held_after is not None and entries[0].seq > self._held_after:
                return
            oldest = entries.popleft()
            self._bytes -= oldest.size
            if self.cursor is not None and oldest.seq > self.cursor:
                self.overflowed = True
            if oldest is self._open_tokens:
                self._open_tokens = None

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
        # Seqs in the window are consecutive, so the next entry is found by arithmetic.
        index = max(0, self.cursor + 1 - self.first_seq)
        entry = self._entries[index]
        frame = self._freeze(entry)
        self.cursor = entry.seq
        if entry is self._open_tokens:
            self._open_tokens = None
        return frame

    def _freeze(self, entry: _Entry) -> str:
        """The entry's final frame; an open token frame stops growing and is counted exactly."""
        before = entry.size
        frame = entry.text()
        self._bytes += entry.size - before
        return frame

    # Record ------------------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {"seq": self._seq, "frames": [[e.seq, self._freeze(e)] for e in self._entries]}

    def load(self, data: Mapping[str, Any]) -> None:
        self._entries.clear()
        self._bytes = 0
        self._seq = data["seq"]
        self._open_tokens = None
        for seq, frame in data["frames"]:
            entry = _Entry(seq, frame)
            self._entries.append(entry)
            self._bytes += entry.size
