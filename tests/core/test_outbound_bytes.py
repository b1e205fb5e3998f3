"""Regressions of the outbound log: byte counts stay true, and the byte bound counts bytes."""

from __future__ import annotations

from bridge.outbound import OutboundLog
from bridge.protocol import ServerPongMessage


def frame_sizes(log: OutboundLog) -> int:
    return sum(len(text) for _, text in log.dump()["frames"])


def make(max_messages: int = 100, max_bytes: int = 1_000_000) -> OutboundLog:
    return OutboundLog(max_messages=max_messages, max_bytes=max_bytes)


def test_dump_leaves_the_byte_count_true() -> None:
    # dump() turns an open coalesced token entry into its final frame; the count must follow.
    log = make()
    for _ in range(10):
        log.push_token("r1", "abcd")
    log.dump()
    assert log.size_bytes == frame_sizes(log)


def test_the_byte_bound_counts_bytes_not_characters() -> None:
    # 1,000 euro signs are 3,000 bytes of UTF-8 on the wire and in any store.
    log = make(max_bytes=2_000)
    log.push(ServerPongMessage(nonce="a"))
    log.push(ServerPongMessage(nonce="\u20ac" * 1000))
    frames = log.dump()["frames"]
    assert sum(len(text.encode()) for _, text in frames) <= 2_000 or len(frames) == 1
