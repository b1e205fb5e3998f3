"""The `agent-bridge` command and the example programs, each run as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from bridge.wire import protocol_json_schema
from bridge_client import BridgeClient

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("agent-bridge")
BOUND_S = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[int, list[str]]]:
    """Run `agent-bridge serve` and yield once uvicorn says it is listening."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        "serve",
        "--port",
        str(port),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(BOUND_S):
            while not any("Uvicorn running on" in line for line in lines):
                raw = await process.stdout.readline()
                assert raw, f"serve exited early: {lines}"
                lines.append(raw.decode())
        yield port, lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            async with asyncio.timeout(BOUND_S):
                await process.wait()
        except TimeoutError:
            process.kill()


async def test_serve_prints_its_url_and_model_and_answers(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "", "OPENAI_BASE_URL": "", "BRIDGE_MODEL": ""}
    async with serve(env=env) as (port, lines):
        banner = "".join(lines)
        assert f"http://127.0.0.1:{port}" in banner
        assert "model: offline" in banner
        client = BridgeClient(f"ws://127.0.0.1:{port}/ws/agent/cli")

        @client.tool
        def read_clock() -> str:
            """Read the clock."""
            return "12:00"

        async with asyncio.timeout(BOUND_S), client:
            result = await client.run("read the clock")
    assert result.reason == "done" and "12:00" in result.text


async def test_schema_command_prints_the_committed_schema() -> None:
    process = await asyncio.create_subprocess_exec(
        str(CLI), "schema", stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(BOUND_S):
        out, _ = await process.communicate()
    assert process.returncode == 0
    printed = json.loads(out)
    assert printed == protocol_json_schema()
    assert printed == json.loads((ROOT / "docs" / "protocol.schema.json").read_text())


async def run_example(name: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / name),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(BOUND_S):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_example_python_client() -> None:
    out = await run_example("python_client.py")
    assert "tool_request: count_words {'text': 'the quick brown fox'}" in out
    assert "tool_result: ok {'words': 4}" in out
    assert "reason: done" in out


async def test_example_embed_fastapi() -> None:
    out = await run_example("embed_fastapi.py")
    assert "own route: {'hello': 'world'}" in out
    assert "server tools: ['add_numbers']" in out
    assert "add_numbers returned: 42" in out
