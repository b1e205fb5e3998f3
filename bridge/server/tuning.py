"""Process-level tuning for a server that holds many sessions.

With a thousand sessions alive, Python's cyclic garbage collector, not I/O, sets the tail
latency: each full collection walks every tracked object, and most of them are modules, classes
and schemas created at start-up that never become garbage. Freezing them after start-up moves
them out of every later collection, and higher thresholds make collections rarer (the young
generation of a busy server is mostly short-lived messages freed by reference counting anyway).
docs/benchmarks.md has the measurements behind the numbers.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc(thresholds: tuple[int, int, int] = GC_THRESHOLDS) -> None:
    """Call once, after start-up and before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
