"""What a worker keeps of the sessions it let go of, so that one coming back loads only what
changed since it left.

Behind a balancer with no stickiness, a client that reconnects lands on the next worker, and
its session moves there; after a few moves the session comes back to a worker that ran it
before. Its conversation and replay window only grow at the end and lose their oldest items,
so that worker still holds most of them: the claim reads only the items added since (see
`bridge.redis_scripts.ARRIVE`), and the session is put together from the copy and those. A
long session then moves for the cost of a short one.

A copy is kept only when its lists are exactly as stored (the session's last write left
none of their items out), so the stored lists extend it; it is dropped after the session's
time to live, and the oldest copies go first when the copies together pass `max_bytes`. A copy
is used only for a client holding the session's resume token: a session deleted and started
again under the same id has another token, and lists that do not continue the copy's. No I/O
here.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.access import same_token
from bridge.calls import CallState
from bridge.conversation import Turn, load_turns
from bridge.session import Session

__all__ = ["Departed", "DepartedSessions", "complete", "copy_of", "stored_lists"]

# What an item costs in memory beyond its text, for the bound (a frozen dataclass or a tuple,
# and its strings' headers).
_ITEM_OVERHEAD = 200


@dataclass(frozen=True, slots=True)
class Departed:
    """A session's lists as stored when this worker let it go."""

    # The session's resume token: a session deleted and started again under the same id has
    # another, and its lists are no continuation of these.
    token: str
    # Per list: (items ever added, items kept), as the session's mark had them, and the name of
    # the counting they belong to (`Session.counting`).
    held: Mapping[str, tuple[int, int]]
    counting: str
    turns: tuple[Turn, ...]
    # The conversation's size and where its exchange in progress starts, as the bound keeps
    # them: counted once here, not over every turn again.
    chars: int
    exchange_start: int
    frames: tuple[str, ...]
    frames_bytes: int
    finished: tuple[tuple[str, CallState], ...]
    decided: tuple[str, ...]
    size: int
    until: float


class DepartedSessions:
    def __init__(
        self,
        *,
        max_bytes: int,
        keep_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self._keep_s = keep_s
        self._clock = clock
        self._copies: OrderedDict[str, Departed] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._copies)

    @property
    def reads_in_part(self) -> bool:
        """Whether sessions are put together from copies at all (`max_bytes` 0: never)."""
        return self._max_bytes > 0

    def keep(self, session: Session) -> bool:
        """Keep a copy of a session this worker lets go of (False: its lists changed since its
        last write, so the stored ones may not extend them, and nothing is kept)."""
        self.drop(session.id)
        copy = copy_of(session, self._clock() + self._keep_s)
        if copy is None or copy.size > self._max_bytes:
            return False
        self._copies[session.id] = copy
        self.bytes += copy.size
        self._evict()
        return True

    def take(self, session_id: str, token: str | None) -> Departed | None:
        """The copy of a session, if one is kept, fresh, and of the session whose resume token
        the client holds (it is kept no longer either way)."""
        copy = self._copies.pop(session_id, None)
        if copy is None:
            return None
        self.bytes -= copy.size
        if token is None or not same_token(token, copy.token) or copy.until <= self._clock():
            return None
        return copy

    def drop(self, session_id: str) -> None:
        copy = self._copies.pop(session_id, None)
        if copy is not None:
            self.bytes -= copy.size

    def _evict(self) -> None:
        now = self._clock()
        while self._copies:
            session_id, oldest = next(iter(self._copies.items()))
            if self.bytes <= self._max_bytes and oldest.until > now:
                return
            self.drop(session_id)


def stored_lists(session: Session) -> Mapping[str, tuple[int, int]] | None:
    """Per list, (items ever added, items kept) as the store holds them, when the session's
    lists are exactly that (None: they changed since its last write, or it was never written).
    The head does not matter: a claim reads it whole."""
    stored = session.stored
    if stored is None or session.mark().lists != stored.lists:
        return None
    return stored.lists


def copy_of(session: Session, until: float = float("inf")) -> Departed | None:
    """The session's lists as a copy, if they are as stored (see `stored_lists`)."""
    held = stored_lists(session)
    if held is None:
        return None
    conversation = session.conversation
    turns = tuple(conversation.turns)
    frames = tuple(session.outbound.frames())
    finished = tuple(session.calls.finished())
    decided = tuple(session.approvals.decided())
    items = len(turns) + len(frames) + len(finished) + len(decided)
    return Departed(
        session.resume_token,
        dict(held),
        session.counting,
        turns,
        conversation.chars,
        conversation.exchange_start,
        frames,
        session.outbound.size_bytes,
        finished,
        decided,
        session.outbound.size_bytes + conversation.chars + _ITEM_OVERHEAD * items,
        until,
    )


def complete(
    session: Session, earlier: Departed, since: Mapping[str, tuple[int, list[str]]]
) -> None:
    """Put back the lists of a session loaded with only what was added to them since the
    `earlier` copy: for each, the copy's items but the `dropped` oldest, then the new ones."""
    if "turns" in since:
        dropped, items = since["turns"]
        new = load_turns(_parsed(items))
        session.conversation.carry_on(
            earlier.turns, earlier.chars, earlier.exchange_start, dropped, new
        )
    if "frames" in since:
        dropped, items = since["frames"]
        session.outbound.carry_on(earlier.frames, earlier.frames_bytes, dropped, items)
    if "finished" in since:
        dropped, items = since["finished"]
        finished = [(call_id, CallState(state)) for call_id, state in _parsed(items)]
        session.calls.restore_finished([*earlier.finished[dropped:], *finished])
    if "decided" in since:
        dropped, items = since["decided"]
        session.approvals.restore_decided([*earlier.decided[dropped:], *items])


def _parsed(items: list[str]) -> list[Any]:
    # One parse of the items joined, as `bridge.record.join` does for a whole list.
    return json.loads("[" + ",".join(items) + "]") if items else []
