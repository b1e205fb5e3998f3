"""A session's record in parts, so that a shared store writes only what changed.

`Session.dump()` is one JSON-able dict. Most of it is small and changes on every step (the
pending calls, the run); four parts only grow at the end and lose their oldest items: the
conversation's turns, the replay window's frames, and the ids of finished calls and decided
approvals. Rewriting those on every step made a store's cost grow with the session, so they are
kept as lists the store appends to and trims at the front:

- `head`: the record without the four lists and without the tools, as JSON text;
- `tools`: the client's tool definitions as JSON text, written only when they changed;
- `tails`: for each list, the items to drop from its front and the items to append, or a reset.

`Changes` carry the `Mark` of what the store holds once they are written; the next changes are
computed from it. `split` turns a whole record into changes that replace everything (a record
of any shape: what it lacks is simply not split out), and `join` puts the parts back together
into exactly the record that was split. No I/O here: a store applies the changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any

__all__ = [
    "JSON_LISTS",
    "LISTS",
    "Changes",
    "Mark",
    "Tail",
    "join",
    "parts",
    "split",
    "tail",
    "to_json",
]

# The list parts, in the order a store keeps them. "frames" items are the frames' own text;
# the others are JSON texts (decided approvals: plain call ids).
LISTS = ("turns", "frames", "finished", "decided")
# The list parts whose items are JSON texts, which `join` parses as one array: a store may hand
# over such a part as a single text of its items joined by commas.
JSON_LISTS = frozenset({"turns", "finished"})
# Where each list sits in a record: (parent key or None, key).
_PATHS: dict[str, tuple[str | None, str]] = {
    "turns": (None, "conversation"),
    "frames": ("outbound", "frames"),
    "finished": ("calls", "finished"),
    "decided": ("approvals", "decided"),
}
# The head names the lists that were taken out of it, so `join` puts back exactly those.
_SPLIT = "~split"
# A record that has a key of that name itself is kept whole under this one, unsplit.
_WHOLE = "~whole"


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Tail:
    """What a list part needs: drop `drop` items from the front, then append `items`; with
    `reset`, the stored list is replaced by `items`."""

    items: list[str]
    drop: int = 0
    reset: bool = False
    # How many items the stored list holds before the change: a store finding another number
    # holds something else than the changes were computed from, and must not apply them.
    expect: int = 0


@dataclass(frozen=True, slots=True)
class Mark:
    """What a store holds of a session: per list, (items ever added, items kept) when it was
    written, and the version of the tool set written."""

    lists: Mapping[str, tuple[int, int]]
    tools_version: int
    # The head as written ("" when unknown): a write that would send the same again is skipped.
    head: str = ""


@dataclass(frozen=True, slots=True)
class Changes:
    head: str
    tools: str | None
    tails: dict[str, Tail] = field(default_factory=dict)
    mark: Mark | None = None
    # A record written as it is (`split`): whatever the store held goes, tools included.
    replace: bool = False

    def same_as(self, stored: Mark | None) -> bool:
        """Whether writing these would change nothing in a store that holds `stored`."""
        return (
            stored is not None
            and self.tools is None
            and bool(stored.head)
            and self.head == stored.head
            and all(not t.reset and not t.items and not t.drop for t in self.tails.values())
        )

    @property
    def whole(self) -> bool:
        """Whether these replace whatever the store had (safe on a store that lost it)."""
        if self.replace:
            return True
        return self.tools is not None and all(t.reset for t in self.tails.values())


def tail(
    added: int,
    items: Collection[Any],
    since: tuple[int, int] | None,
    encode: Callable[[Any], str],
) -> Tail:
    """The change to a list of which `added` items were ever appended and `items` are kept
    (oldest first; reversible, so the newest are reached without walking the rest), given what
    was stored: `since` = (added, kept) then, or None for nothing."""
    new = added - since[0] if since is not None else len(items)
    # An empty list with nothing new is no change (an empty stored list stays as it is).
    if since is None or new < 0 or (new >= len(items) and new > 0):
        return Tail([encode(item) for item in items], reset=True)
    fresh = list(islice(reversed(items), new))  # type: ignore[call-overload]
    fresh.reverse()
    texts = [encode(item) for item in fresh]
    return Tail(texts, drop=since[1] - (len(items) - new), expect=since[1])


def parts(head: dict[str, Any], tools: str | None, tails: dict[str, Tail], mark: Mark) -> Changes:
    """Changes from a head that already lacks the lists of `tails` (frames: with "first", the
    seq of the window's oldest frame, in its "outbound")."""
    text = to_json({**head, _SPLIT: sorted(tails)})
    return Changes(text, tools, tails, replace(mark, head=text))


def split(record: Mapping[str, Any]) -> Changes:
    """A whole record as changes that replace everything stored."""
    tails: dict[str, Tail] = {name: Tail([], reset=True) for name in LISTS}
    if _SPLIT in record:
        return Changes(to_json({_SPLIT: None, _WHOLE: record}), None, tails, replace=True)
    head = dict(record)
    tails = {}
    for name, (parent, key) in _PATHS.items():
        holder = head if parent is None else head.get(parent)
        if not isinstance(holder, dict) or not isinstance(holder.get(key), list):
            continue
        items = holder[key]
        if name == "frames":
            if not _consecutive(items) or "first" in holder:
                continue
            first = items[0][0] if items else None
            texts = [frame for _, frame in items]
        elif name == "decided":
            if not all(isinstance(item, str) for item in items):
                continue
            texts = list(items)
        else:
            texts = [to_json(item) for item in items]
        holder = dict(holder)
        del holder[key]
        if name == "frames":
            holder["first"] = first
        if parent is None:
            head = holder
        else:
            head[parent] = holder
        tails[name] = Tail(texts, reset=True)
    tools = to_json(head.pop("tools")) if "tools" in head else None
    head[_SPLIT] = sorted(tails)
    # Lists the record lacks are emptied too: a put replaces the whole record.
    for name in LISTS:
        tails.setdefault(name, Tail([], reset=True))
    return Changes(to_json(head), tools, tails, replace=True)


def _consecutive(frames: list[Any]) -> bool:
    return all(
        isinstance(item, list)
        and len(item) == 2
        and type(item[0]) is int
        and isinstance(item[1], str)
        for item in frames
    ) and all(frames[i][0] == frames[0][0] + i for i in range(len(frames)))


def join(head: str, tools: str | None, lists: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The record whose parts a store holds (the inverse of `split` and of applied changes)."""
    record: dict[str, Any] = json.loads(head)
    names = record.pop(_SPLIT, ())
    if names is None:
        whole: dict[str, Any] = record[_WHOLE]
        return whole
    for name in names:
        parent, key = _PATHS[name]
        holder = record if parent is None else record[parent]
        items = lists.get(name, ())
        if name == "frames":
            first = holder.pop("first")
            holder[key] = [[first + i, frame] for i, frame in enumerate(items)]
        elif name == "decided":
            holder[key] = list(items)
        else:
            # One parse of the whole list costs a fraction of one parse per item.
            holder[key] = json.loads("[" + ",".join(items) + "]")
    if tools is not None:
        record["tools"] = json.loads(tools)
    return record
