"""`make bench QUICK=1` keeps working: every benchmark runs and yields sane figures.

Only the shape and sanity of the figures are checked, never their size: timings on a shared
machine say nothing about correctness.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11"]


def numbers(value: Any) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    return []


def test_quick_mode_runs_every_benchmark(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["mode"] == "quick"
    assert sorted(report["benchmarks"]) == sorted(EXPECTED)
    for key in EXPECTED:
        bench = report["benchmarks"][key]
        assert bench["summary"], key
        for variant, figures in bench["summary"].items():
            for name, value in figures.items():
                assert math.isfinite(value), (key, variant, name)
                assert value >= 0, (key, variant, name)
            assert figures["rounds"] >= 1
        assert bench["targets"], key
        for target in bench["targets"]:
            assert isinstance(target["met"], bool)
    # The headline figures are real measurements, not zeros.
    summary = {k: report["benchmarks"][k]["summary"] for k in EXPECTED}
    assert summary["B1"]["bridge"]["p50_ms"] > 0
    assert summary["B1"]["bridge"]["calls_per_s"] > 0
    assert summary["B2"]["bridge"]["tokens_per_s"] > 0
    assert summary["B3"]["bridge"]["p50_ms"] > 0
    assert summary["B4"]["bridge"]["connected_120"] == 120
    assert summary["B5"]["bridge"]["connections"] > 0
    assert summary["B5"]["bridge"]["errors"] == 0
    assert summary["B6"]["bridge"]["calls_per_s"] > 0
    assert summary["B7"]["bridge"]["calls_per_s"] > 0
    assert summary["B8"]["mid-tool-call"]["p99_ms"] > 0
    assert summary["B8"]["mid-stream"]["not_stopped"] == 0
    assert summary["B10"]["reconnect, non-owner"]["p50_ms"] > 0
    assert summary["B10"]["steady, after the move"]["p50_ms"] > 0
    assert summary["B11"]["2 workers, Redis"]["calls_per_s"] > 0
    assert summary["B11"]["1 worker, Redis"]["errors"] == 0
    assert summary["B9"]["resume, first replayed frame"]["p50_ms"] > 0
    assert any(line.startswith("B1") for line in done.stdout.splitlines())
