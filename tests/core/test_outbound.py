"""The outbound log: seq numbering, the replay window, reading order, coalescing. No event loop."""

from __future__ import annotations

import json
from typing import Any

from bridge.outbound import COALESCE_MAX_CHARS, OutboundLog
from bridge.protocol import ServerPongMessage, ToolResultMessage


def pong(nonce: str = "n") -> ServerPongMessage:
    return ServerPongMessage(nonce=nonce)


def make(max_messages: int = 100, max_bytes: int = 1_000_000) -> OutboundLog:
    return OutboundLog(max_messages=max_messages, max_bytes=max_bytes)


def read_all(log: OutboundLog) -> list[dict[str, Any]]:
    frames = []
    while (text := log.take()) is not None:
        frames.append(json.loads(text))
    return frames


def frame_sizes(log: OutboundLog) -> int:
    return sum(len(text) for _, text in log.dump()["frames"])


# Numbering ------------------------------------------------------------------------------------


def test_push_numbers_from_one_and_stamps_the_message() -> None:
    log = make()
    messages = [pong(str(n)) for n in range(3)]
    assert [log.push(m) for m in messages] == [1, 2, 3]
    assert [m.seq for m in messages] == [1, 2, 3]
    assert log.last_seq == 3 and log.first_seq == 1 and len(log) == 3
    log.attach(0)
    assert [(f["seq"], f["nonce"]) for f in read_all(log)] == [(1, "0"), (2, "1"), (3, "2")]


def test_a_message_with_an_unencodable_value_still_takes_the_next_seq() -> None:
    log = make()
    log.push(pong())
    odd = ToolResultMessage(id="c", run_id="r", name="t", status="ok", result=object())
    assert log.push(odd) == 2 and log.push(pong()) == 3
    log.attach(0)
    frames = read_all(log)
    assert [(f["seq"], f["type"]) for f in frames] == [(1, "pong"), (2, "tool_result"), (3, "pong")]


def test_tokens_and_messages_share_one_sequence() -> None:
    log = make()
    log.attach()
    log.push(pong())
    log.push_token("r1", "a")
    log.push(pong())
    log.push_token("r1", "b")
    frames = read_all(log)
    assert [(f["seq"], f["type"]) for f in frames] == [
        (1, "pong"),
        (2, "token"),
        (3, "pong"),
        (4, "token"),
    ]


# The window -----------------------------------------------------------------------------------


def test_window_is_bounded_in_messages() -> None:
    log = make(max_messages=3)
    for n in range(5):
        log.push(pong(str(n)))
    assert len(log) == 3 and log.first_seq == 3 and log.last_seq == 5
    assert not log.covers(1)  # seq 2 is gone
    assert log.covers(2) and log.covers(4) and log.covers(5)
    assert not log.covers(6)  # a seq this log never issued
    assert not log.covers(-1)
    log.attach(2)
    assert [f["seq"] for f in read_all(log)] == [3, 4, 5]


def test_window_is_bounded_in_bytes() -> None:
    one = len(json.dumps({"type": "pong", "nonce": "x" * 100, "seq": 10}, separators=(",", ":")))
    log = make(max_bytes=one * 3)
    for n in range(10):
        log.push(pong(f"{n}" + "x" * (100 - len(str(n)))))
    assert log.size_bytes <= one * 3
    assert len(log) == 3 and log.first_seq == 8
    assert log.size_bytes == frame_sizes(log)
    assert not log.covers(6) and log.covers(7)


def test_the_newest_frame_stays_even_when_it_alone_is_over_the_byte_bound() -> None:
    log = make(max_bytes=10)
    log.push(pong("a" * 50))
    log.push(pong("b" * 50))
    assert len(log) == 1 and log.first_seq == 2
    assert log.covers(1) and not log.covers(0)


def test_empty_log_covers_only_zero() -> None:
    log = make()
    assert log.first_seq == 1 and log.covers(0) and not log.covers(1)
    assert not log.full and log.size_bytes == 0


def test_full_by_messages() -> None:
    log = make(max_messages=2)
    log.push(pong())
    assert not log.full
    log.push(pong())
    assert log.full


# Reading --------------------------------------------------------------------------------------


def test_attach_at_head_reads_only_what_comes_next() -> None:
    log = make()
    log.push(pong("old"))
    log.attach()
    assert log.take() is None and log.backlog == 0
    log.push(pong("new"))
    assert log.backlog == 1
    assert [f["nonce"] for f in read_all(log)] == ["new"]
    assert log.backlog == 0


def test_replay_after_a_seq_gives_the_identical_frames_again() -> None:
    log = make()
    log.attach()
    log.push(pong("a"))
    log.push_token("r", "hello")
    log.push(pong("b"))
    first = []
    while (text := log.take()) is not None:
        first.append(text)
    log.detach()
    assert log.take() is None  # nobody attached reads nothing
    log.attach(1)
    again = []
    while (text := log.take()) is not None:
        again.append(text)
    assert again == first[1:]


def test_backlog_counts_untaken_frames_and_is_zero_without_a_reader() -> None:
    log = make()
    log.push(pong())
    assert log.backlog == 0
    log.attach(0)
    log.push(pong())
    assert log.backlog == 2
    log.take()
    assert log.backlog == 1
    log.detach()
    assert log.backlog == 0 and log.cursor is None


# Coalescing -----------------------------------------------------------------------------------


def test_tokens_coalesce_while_nobody_reads() -> None:
    log = make()
    for piece in ("Hel", "lo", " world"):
        log.push_token("r1", piece)
    assert log.last_seq == 1 and len(log) == 1
    log.attach(0)
    assert [(f["seq"], f["content"]) for f in read_all(log)] == [(1, "Hello world")]


def test_tokens_do_not_coalesce_for_a_reader_that_keeps_up() -> None:
    log = make()
    log.attach()
    for piece in ("a", "b", "c"):
        log.push_token("r1", piece)
    assert log.last_seq == 3
    assert [f["content"] for f in read_all(log)] == ["a", "b", "c"]


def test_tokens_coalesce_while_the_reader_is_busy_sending() -> None:
    log = make()
    log.attach()
    log.push_token("r1", "a")
    log.reader_busy = True
    log.push_token("r1", "b")
    log.push_token("r1", "c")
    assert log.last_seq == 1
    log.reader_busy = False
    log.push_token("r1", "d")
    assert [f["content"] for f in read_all(log)] == ["abc", "d"]


def test_a_frame_already_taken_is_never_extended() -> None:
    log = make()
    log.attach()
    log.reader_busy = True
    log.push_token("r1", "a")
    assert json.loads(log.take() or "")["content"] == "a"
    log.push_token("r1", "b")
    assert log.last_seq == 2
    assert [f["content"] for f in read_all(log)] == ["b"]


def test_coalescing_stops_at_another_run_a_message_or_the_size_cap() -> None:
    log = make()
    log.push_token("r1", "a")
    log.push_token("r2", "b")  # another run
    log.push(pong())
    log.push_token("r2", "c")  # after a message
    log.push_token("r2", "x" * COALESCE_MAX_CHARS)  # over the cap
    log.attach(0)
    frames = read_all(log)
    assert [(f["type"], f.get("content", "")[:3]) for f in frames] == [
        ("token", "a"),
        ("token", "b"),
        ("pong", ""),
        ("token", "c"),
        ("token", "xxx"),
    ]
    assert [f["seq"] for f in frames] == [1, 2, 3, 4, 5]


def test_coalesced_bytes_are_accounted_once_materialised() -> None:
    log = make()
    for _ in range(10):
        log.push_token("r1", "abcd")
    log.attach(0)
    read_all(log)
    assert log.size_bytes == frame_sizes(log)


# Overflow -------------------------------------------------------------------------------------


def test_overflow_when_an_unsent_frame_leaves_the_window_while_attached() -> None:
    log = make(max_messages=2)
    log.attach()
    log.push(pong())
    log.push(pong())
    assert not log.overflowed
    log.push(pong())  # seq 1 was never taken
    assert log.overflowed


def test_no_overflow_when_the_evicted_frames_were_sent() -> None:
    log = make(max_messages=2)
    log.attach()
    for _ in range(5):
        log.push(pong())
        assert log.take() is not None
    assert not log.overflowed


def test_no_overflow_without_a_reader_and_attach_clears_it() -> None:
    log = make(max_messages=2)
    for _ in range(5):
        log.push(pong())
    assert not log.overflowed
    log.attach(0)
    log.push(pong())
    assert log.overflowed
    log.attach(log.first_seq - 1)
    assert not log.overflowed


# Record ---------------------------------------------------------------------------------------


def test_dump_and_load_keep_numbering_frames_and_window() -> None:
    log = make(max_messages=4)
    for n in range(6):
        log.push(pong(str(n)))
    log.push_token("r1", "a")
    log.push_token("r1", "b")  # coalesced and still open when dumped
    record = json.loads(json.dumps(log.dump()))
    copy = make(max_messages=4)
    copy.load(record)
    assert copy.dump() == record == log.dump()
    assert (copy.last_seq, copy.first_seq, len(copy)) == (log.last_seq, log.first_seq, len(log))
    assert copy.size_bytes == frame_sizes(copy)
    copy.attach(copy.first_seq - 1)
    log.attach(log.first_seq - 1)
    assert read_all(copy) == read_all(log)
    assert read_all(copy) == []
    assert copy.push(pong()) == log.last_seq + 1
    # A loaded log never extends a frame it was given.
    copy.detach()
    copy.push_token("r9", "z")
    copy.push_token("r9", "z")
    assert copy.last_seq == log.last_seq + 2
