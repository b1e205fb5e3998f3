"""Which engine checks client schemas: `google-re2` under `jsonschema`, or `jsonschema-rs`.

    python benchmarks/schema_engines.py [--quick]

Every figure is the median of several runs in one process, in milliseconds (microseconds where
marked). The question each row answers is written next to it; docs/security.md keeps the figures
and the decision they led to.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, validators

from bridge import regex
from bridge.limits import ToolLimits
from bridge.toolspec import parse_tool, register_many

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def big_schema(props: int = 300) -> dict[str, Any]:
    """A plain 33 KB parameters schema, the shape of the issue's registration attack."""
    return {
        "type": "object",
        "properties": {
            f"field_{i}": {"type": "string", "description": "x" * 40, "maxLength": 100}
            for i in range(props)
        },
        "required": [f"field_{i}" for i in range(20)],
    }


def nested_schema(depth: int = 23) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "string"}
    for _ in range(depth):
        node = {"type": "object", "properties": {"a": node, "b": {"type": "integer"}}}
    return node


TYPICAL = {
    "type": "object",
    "properties": {
        "query": {"type": "string", "minLength": 1, "maxLength": 200},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[a-z-]+$"}},
        "mode": {"enum": ["fast", "exact"]},
    },
    "required": ["query"],
}
TYPICAL_ARGS = {"query": "x" * 120, "limit": 10, "tags": ["alpha", "beta-gamma"], "mode": "fast"}


def re2_validator_class() -> Any:
    """jsonschema's Draft 2020-12 with `pattern` and `patternProperties` run by RE2."""
    base = Draft202012Validator.VALIDATORS

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if validator.is_type(instance, "string") and not regex.search(patrn, instance):
            yield from base["pattern"](validator, patrn, "", {"pattern": "(?!)"})

    return validators.extend(Draft202012Validator, {"pattern": pattern})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    runs = 5 if parser.parse_args().quick else 25
    rows: list[tuple[str, str, float]] = []

    def row(what: str, engine: str, ms: float) -> None:
        rows.append((what, engine, ms))
        print(f"{what:<44} {engine:<26} {ms:>10.3f}")

    big = big_schema()
    print(f"big schema: {len(json.dumps(big))} bytes; nested: 23 levels")
    row(
        "meta-schema check, 33 KB schema (ms)",
        "jsonschema",
        _median_ms(lambda: Draft202012Validator.check_schema(big), runs),
    )
    row(
        "meta-schema check, 33 KB schema (ms)",
        "jsonschema-rs",
        _median_ms(lambda: jsonschema_rs.meta.is_valid(big), runs),
    )
    deep = nested_schema()
    row(
        "meta-schema check, 23 levels (ms)",
        "jsonschema",
        _median_ms(lambda: Draft202012Validator.check_schema(deep), runs),
    )
    row(
        "meta-schema check, 23 levels (ms)",
        "jsonschema-rs",
        _median_ms(lambda: jsonschema_rs.meta.is_valid(deep), runs),
    )
    row(
        "compile a validator, 33 KB (ms)",
        "jsonschema",
        _median_ms(lambda: Draft202012Validator(big), runs),
    )
    row(
        "compile a validator, 33 KB (ms)",
        "jsonschema-rs",
        _median_ms(
            lambda: jsonschema_rs.Draft202012Validator(
                big, pattern_options=jsonschema_rs.RegexOptions()
            ),
            runs,
        ),
    )

    # Per call: microseconds, so many repetitions per sample.
    py_val = re2_validator_class()(TYPICAL)
    rs_val = jsonschema_rs.Draft202012Validator(
        TYPICAL, pattern_options=jsonschema_rs.RegexOptions()
    )
    plain = Draft202012Validator(TYPICAL)
    reps = 1000

    def per_call_us(fn: Callable[[], object]) -> float:
        return _median_ms(lambda: [fn() for _ in range(reps)], max(3, runs // 5)) * 1000 / reps

    row(
        "valid 200 B arguments (us)",
        "jsonschema (re)",
        per_call_us(lambda: next(plain.iter_errors(TYPICAL_ARGS), None)),
    )
    row(
        "valid 200 B arguments (us)",
        "jsonschema + re2",
        per_call_us(lambda: next(py_val.iter_errors(TYPICAL_ARGS), None)),
    )
    row(
        "valid 200 B arguments (us)",
        "jsonschema-rs",
        per_call_us(lambda: rs_val.is_valid(TYPICAL_ARGS)),
    )
    spec = parse_tool({"name": "typical", "parameters": TYPICAL}, ToolLimits())
    row(
        "valid 200 B arguments (us)",
        "bridge (fastschema+re2)",
        per_call_us(lambda: spec.validate_arguments(TYPICAL_ARGS)),
    )
    wide = [{"name": f"w{i}", "parameters": big_schema(240)} for i in range(34)]
    frame = len(json.dumps(wide))

    def register() -> None:
        # Unique every time, as an attacker's would be: the definition cache never helps.
        salt = time.perf_counter_ns()
        register_many([{**w, "description": f"{salt}"} for w in wide], {}, ToolLimits())

    row(f"register_tools, {frame // 1000} KB, 34 tools (ms)", "bridge", _median_ms(register, 5))

    evil = {"type": "string", "pattern": "^(a+)+$"}
    py_evil = re2_validator_class()(evil)
    rs_evil = jsonschema_rs.Draft202012Validator(evil, pattern_options=jsonschema_rs.RegexOptions())
    for n in (5_000, 100_000):
        crafted = "a" * n + "!"
        row(
            f"^(a+)+$ on {n:,} crafted chars (ms)",
            "jsonschema + re2",
            _median_ms(lambda c=crafted: next(py_evil.iter_errors(c), None), runs),
        )
        row(
            f"^(a+)+$ on {n:,} crafted chars (ms)",
            "jsonschema-rs",
            _median_ms(lambda c=crafted: rs_evil.is_valid(c), runs),
        )
    backtracking = re.compile("^(a+)+$")
    row(
        "^(a+)+$ on 22 crafted chars (ms)",
        "python re (today)",
        _median_ms(lambda: backtracking.search("a" * 22 + "!"), 3),
    )


if __name__ == "__main__":
    main()
