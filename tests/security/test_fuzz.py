"""The protocol fuzzer: random and mutated frames against the real server (uvicorn).

Hypothesis builds each example as a short conversation of frames on one new connection; after
every frame a `ping` marks the end of its answers. Asserted for every example: no `1011`, no
traceback in the `bridge` and `uvicorn.error` logs, every malformed frame answered with the code
docs/protocol.md gives it, every server frame valid against docs/protocol.schema.json, no gap in
`seq` among the frames that carry one; and afterwards the server still serves a normal session.

`make test` runs a small budget; `make fuzz` a large one (BRIDGE_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from bridge import BridgeSettings
from bridge.testing import ScriptedModel
from tests.conftest import StartBridge
from tests.security.wire import captured_logs, schema_errors

EXAMPLES = int(os.environ.get("BRIDGE_FUZZ_EXAMPLES", "120"))
WAIT_S = 10.0
KNOWN = [
    "hello",
    "register_tools",
    "unregister_tools",
    "message",
    "stop",
    "tool_response",
    "tool_progress",
    "ping",
    "pong",
    "bye",
]
FIELDS = [
    "type", "protocol", "tools", "client", "resume", "names", "content", "id", "status",
    "result", "error", "progress", "message", "nonce", "token", "last_seq",
]  # fmt: skip
# Closes a fuzzed frame may rightly cause: bye (1000), a refused protocol (1008), too big (1009).
ALLOWED_CLOSES = {1000, 1008, 1009}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.sampled_from(["\ud83d", "a\udfff", "\ud83d\ude00", "", "ok", "call_1_1", "^(a+)+$"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
schemas = st.one_of(
    values,
    st.fixed_dictionaries(
        {"type": st.just("object")},
        optional={
            "properties": st.dictionaries(
                st.text(max_size=6),
                st.fixed_dictionaries(
                    {},
                    optional={
                        "type": st.sampled_from(["string", "integer", "nope", 3]),
                        "pattern": st.sampled_from(
                            ["^(a+)+$", "(a)\\1", "(?<=x)y", "[", "a{2000}"]
                        ),
                        "$ref": st.sampled_from(["#/nope", "#", "http://127.0.0.1:9/x"]),
                    },
                ),
                max_size=3,
            ),
            "patternProperties": st.dictionaries(
                st.sampled_from(["^a", "(", "(?=a)"]), values, max_size=2
            ),
            "unevaluatedProperties": st.booleans(),
            "$schema": st.sampled_from(
                ["http://127.0.0.1:9/meta", "https://json-schema.org/draft/2020-12/schema"]
            ),
        },
    ),
)
tools = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(
            st.sampled_from(["t1", "t2", "add_numbers", ""]), st.text(max_size=80), values
        ),
        "description": st.one_of(st.text(max_size=20), values),
        "parameters": schemas,
        "output_schema": schemas,
        "timeout_ms": values,
        "interactive": values,
        "colour": values,
    },
)
messages = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(KNOWN) | values,
    st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(values, st.lists(tools, max_size=4)),
        max_size=4,
    ),
)


def _encode(message: Any, how: int, cut: int) -> str | bytes:
    text = json.dumps(message)
    if how == 0:
        return text
    if how == 1:
        return text[: cut % (len(text) + 1)]
    if how == 2:
        return text.replace('"', '"\\ud83d', 1)
    if how == 3:
        return "[" * (cut * 97 % 200_000) + text
    return text.encode()


frames = st.one_of(
    st.builds(_encode, messages, st.integers(0, 4), st.integers(0, 10_000)),
    st.builds(_encode, values, st.integers(0, 3), st.integers(0, 10_000)),
    st.text(max_size=60),
    st.binary(max_size=20),
)
conversations = st.tuples(st.booleans(), st.lists(frames, min_size=1, max_size=6))


def expected_code(frame: str | bytes) -> str | None:
    """The error code docs/protocol.md promises for a malformed frame; None when well-formed."""
    if isinstance(frame, bytes):
        return "binary_not_supported"
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        return "invalid_json"
    if not isinstance(data, dict):
        return "invalid_message"
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in KNOWN:
        return "unknown_type"
    return None


class Failures(list[str]):
    pass


class Exchange:
    """One fuzzed connection: send, then read up to our own pong, checking as frames arrive."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seqs: list[int] = []
        self.marks = 0
        self.closed: int | None = None

    def roundtrip(self, frame: str | bytes, problems: Failures) -> list[dict[str, Any]]:
        self.marks += 1
        mark = f"fuzz-mark-{self.marks}"
        answers: list[dict[str, Any]] = []
        deadline = time.monotonic() + WAIT_S
        try:
            self.ws.send(frame)
            self.ws.send(json.dumps({"type": "ping", "nonce": mark}))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    problems.append(f"no pong within {WAIT_S} s after {frame[:120]!r}")
                    return answers
                got = json.loads(self.ws.recv(timeout=remaining))
                for problem in schema_errors(got):
                    problems.append(f"schema: {problem} in {str(got)[:200]}")
                if isinstance(got.get("seq"), int):
                    self.seqs.append(got["seq"])
                if got.get("type") == "pong" and got.get("nonce") == mark:
                    return answers
                answers.append(got)
        except ConnectionClosed as exc:
            self.closed = exc.rcvd.code if exc.rcvd is not None else None
            return answers


def run_example(url: str, greet: bool, batch: list[str | bytes]) -> Failures:
    problems = Failures()
    with connect(url, max_size=None, open_timeout=WAIT_S, close_timeout=2) as ws:
        exchange = Exchange(ws)
        if greet:
            exchange.roundtrip(json.dumps({"type": "hello", "protocol": 1}), problems)
        for frame in batch:
            answers = exchange.roundtrip(frame, problems)
            if exchange.closed is not None:
                if exchange.closed not in ALLOWED_CLOSES:
                    problems.append(f"closed {exchange.closed} after {frame[:120]!r}")
                break
            code = expected_code(frame)
            if code is not None and code not in [a.get("code") for a in answers]:
                problems.append(f"{frame[:120]!r}: expected {code}, got {answers[:3]}")
    seqs = exchange.seqs
    if seqs and seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        problems.append(f"gap in seq: {seqs}")
    return problems


# The fuzzer opens thousands of sessions from one address as fast as it can: the per-address and
# per-connection rates (tested on their own) are lifted so every frame reaches the parser.
UNLIMITED = {
    name: value
    for name, value in {
        "max_new_sessions_per_minute": 10**9,
        "max_connections_per_address": 10**9,
        "frames_per_s": 1e9,
        "burst_frames": 10**9,
        "bytes_per_s": 1e12,
        "burst_bytes": 10**12,
    }.items()
    if name in BridgeSettings.model_fields
}


@pytest.fixture
def server_url(start_bridge: StartBridge) -> Iterator[str]:
    """The bridge on uvicorn in a thread of its own, so hypothesis can drive it synchronously."""
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    url: list[str] = []

    async def serve() -> None:
        done = asyncio.Event()
        stop.append(done)
        async with start_bridge(model=lambda _sid: ScriptedModel([["ok"]]), **UNLIMITED) as server:
            url.append(server.ws_url(""))
            ready.set()
            await done.wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(WAIT_S), "server did not start"
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(WAIT_S)


def test_fuzzed_frames_never_break_the_server(server_url: str) -> None:
    counter = iter(range(10**9))
    found: list[str] = []
    frames_sent = [0]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(conversations)
    def fuzz(conversation: tuple[bool, list[str | bytes]]) -> None:
        greet, batch = conversation
        frames_sent[0] += len(batch)
        problems = run_example(f"{server_url}fuzz{next(counter)}", greet, batch)
        found.extend(problems)
        assert not problems, problems[:3]

    started = time.monotonic()
    with captured_logs() as logs:
        fuzz()
        # The server still serves a normal session.
        with connect(f"{server_url}after", open_timeout=WAIT_S) as ws:
            ws.send(json.dumps({"type": "hello", "protocol": 1}))
            assert json.loads(ws.recv(timeout=WAIT_S))["type"] == "ready"
            ws.send(json.dumps({"type": "message", "content": "hi"}))
            kinds = []
            while "complete" not in kinds:
                kinds.append(json.loads(ws.recv(timeout=WAIT_S))["type"])
    elapsed = time.monotonic() - started
    print(f"fuzz: {EXAMPLES} examples, {frames_sent[0]} frames, {elapsed:.1f} s")
    assert logs.tracebacks() == []
    assert found == []
