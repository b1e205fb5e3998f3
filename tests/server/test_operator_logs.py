"""What an operator reads: `agent-bridge serve --log-level info` prints one line per run and one
per tool call, as text or as JSON, with no credential in any line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.server.logs import JsonFormatter, RedactSecrets, logging_config
from bridge_client import BridgeClient

CLI = Path(sys.executable).with_name("agent-bridge")
BOUND_S = 20


@dataclass
class Served:
    port: int
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)


async def _pump(stream: asyncio.StreamReader, into: list[str], seen: asyncio.Event) -> None:
    while raw := await stream.readline():
        line = raw.decode()
        into.append(line)
        if "Uvicorn running on" in line:
            seen.set()


@asynccontextmanager
async def serve(*args: str, env: dict[str, str]) -> AsyncIterator[Served]:
    """`agent-bridge serve` with both streams read to the end: after the block, every line the
    server wrote until it stopped is in `stdout` and `stderr`."""
    from tests.server.test_cli_and_examples import free_port

    served = Served(free_port())
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BRIDGE_"))}
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        "serve",
        "--no-demo",
        "--port",
        str(served.port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, "PYTHONUNBUFFERED": "1", **env},
    )
    assert process.stdout is not None and process.stderr is not None
    listening = asyncio.Event()
    pumps = [
        asyncio.create_task(_pump(process.stdout, served.stdout, listening)),
        asyncio.create_task(_pump(process.stderr, served.stderr, listening)),
    ]
    try:
        async with asyncio.timeout(BOUND_S):
            waiting = asyncio.create_task(listening.wait())
            await asyncio.wait({waiting, *pumps}, return_when=asyncio.FIRST_COMPLETED)
            assert listening.is_set(), f"serve exited early: {served.stdout + served.stderr}"
        yield served
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(BOUND_S):
                await process.wait()
                await asyncio.gather(*pumps)
        except TimeoutError:
            process.kill()
            await process.wait()


async def one_run_with_a_tool_call(port: int, token: str) -> tuple[str, str]:
    """A run that calls a client tool, connected with the token in the query string (what a
    careless page would do). Returns the run id and the session's resume token."""
    client = BridgeClient(f"ws://127.0.0.1:{port}/ws/agent?token={token}")

    @client.tool
    def read_clock() -> str:
        """Read the clock."""
        return "12:00"

    async with asyncio.timeout(BOUND_S), client:
        result = await client.run("read the clock")
        resume_token = client.resume_token
    assert result.reason == "done" and "12:00" in result.text
    assert resume_token
    return result.run_id, resume_token


def assert_no_secret(served: Served, *secrets_: str) -> None:
    everything = "".join(served.stdout + served.stderr)
    for secret in secrets_:
        assert secret not in everything


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_text_lines_for_a_run_and_a_tool_call(level: str) -> None:
    token = "tok-" + secrets.token_hex(12)
    env = {"BRIDGE_TOKEN": token, "BRIDGE_LOG_FRAMES": "true"}
    async with serve("--log-level", level, env=env) as served:
        run_id, resume_token = await one_run_with_a_tool_call(served.port, token)
    err = "".join(served.stderr)
    call = re.search(
        rf"INFO: +bridge\.agent\.loop: session \S+ run {run_id} tool read_clock \(client\): ok, "
        r"\d+ ms",
        err,
    )
    assert call, err
    ended = re.search(
        rf"INFO: +bridge\.agent\.runtime: session \S+ run {run_id} ended: done after 2 steps, "
        r"\d+ ms",
        err,
    )
    assert ended, err
    # The request line was logged, with the token taken out.
    assert "token=[redacted]" in err
    assert_no_secret(served, token, resume_token)


@pytest.mark.parametrize("level", ["info", "debug"])
async def test_json_lines_for_a_run_and_a_tool_call(level: str) -> None:
    token = "tok-" + secrets.token_hex(12)
    env = {"BRIDGE_TOKEN": token, "BRIDGE_LOG_FRAMES": "true"}
    async with serve("--log-level", level, "--log-format", "json", env=env) as served:
        run_id, resume_token = await one_run_with_a_tool_call(served.port, token)
    # Every log line is one JSON object; the start-up banner stays on stdout.
    records = [json.loads(line) for line in served.stderr]
    assert records and all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any("Uvicorn running on" in r["message"] for r in records)
    calls = [r for r in records if r["logger"] == "bridge.agent.loop" and r.get("tool")]
    assert len(calls) == 1, records
    call = calls[0]
    assert call["level"] == "info"
    assert (call["run"], call["source"], call["status"]) == (run_id, "client", "ok")
    assert isinstance(call["duration_ms"], int) and call["session"] and call["call"]
    runs = [r for r in records if r["logger"] == "bridge.agent.runtime" and r.get("reason")]
    assert len(runs) == 1, records
    run = runs[0]
    assert (run["run"], run["session"], run["reason"], run["steps"]) == (
        run_id,
        call["session"],
        "done",
        2,
    )
    assert isinstance(run["duration_ms"], int)
    assert any("token=[redacted]" in r["message"] for r in records)
    assert_no_secret(served, token, resume_token)


def test_json_fields_from_extra_are_redacted_too() -> None:
    record = logging.LogRecord(
        "bridge.x", logging.INFO, __file__, 1, "asked %s", ("/ws?token=abc123",), None
    )
    record.url = "/ws/agent?ticket=t-987"
    record.count = 3
    assert RedactSecrets().filter(record)
    entry: dict[str, Any] = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "asked /ws?token=[redacted]"
    assert entry["url"] == "/ws/agent?ticket=[redacted]" and entry["count"] == 3
    assert "abc123" not in json.dumps(entry) and "t-987" not in json.dumps(entry)


def test_logging_config_refuses_unknown_names() -> None:
    with pytest.raises(ValueError, match="log level"):
        logging_config("loud", "text")
    with pytest.raises(ValueError, match="log format"):
        logging_config("info", "xml")
