"""`agent-bridge serve --workers N`: refused without Redis (exit 2, saying why), refused when
the Redis it is given cannot be used (exit 1), and with Redis N forked workers serve sessions on
one port, logging in the format the command line asked for."""

from __future__ import annotations

import asyncio
import json
import subprocess

from bridge.redis_store import RedisStore
from bridge.testing.redis_server import RedisServer, free_port
from bridge_client import BridgeClient
from tests.scaleout.support import (
    READY_S,
    Process,
    agent_bridge,
    healthz,
    owner_pid,
    until,
    worker_env,
)


def serve(*args: str) -> list[str]:
    return [
        *agent_bridge(),
        "serve",
        "--host",
        "127.0.0.1",
        "--no-demo",
        "--model",
        "offline",
        *args,
    ]


def test_workers_without_redis_are_refused_with_the_reason() -> None:
    done = subprocess.run(
        serve("--workers", "2", "--port", str(free_port())),
        env=worker_env(None, "refused"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "--workers needs BRIDGE_REDIS_URL" in done.stderr
    assert "agent-bridge serving" not in done.stdout


def test_workers_with_a_redis_that_cannot_be_used_are_refused() -> None:
    dead = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        serve("--workers", "2", "--port", str(free_port())),
        env=worker_env(dead, "refused"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "cannot be used" in done.stderr
    assert "hunter2" not in done.stderr + done.stdout  # the URL's password is never shown


async def test_two_workers_on_redis_serve_sessions(redis: RedisServer, cluster_name: str) -> None:
    port = free_port()
    master = Process(
        "serve --workers 2",
        serve("--workers", "2", "--port", str(port)),
        worker_env(redis.url, cluster_name),
    )
    store = await RedisStore.connect(redis.url, cluster_name)
    try:
        # Each forked worker says its start-up is complete.
        started = await asyncio.to_thread(
            master.wait_line, "Application startup complete.", READY_S, 2
        )
        assert started, master.output()
        url = f"http://127.0.0.1:{port}"
        assert await healthz(url) == (200, {"status": "ok", "redis": "up"})
        owners = []
        for number in range(2):
            session_id = f"{cluster_name}-{number}"
            async with BridgeClient(f"ws://127.0.0.1:{port}/ws/agent/{session_id}") as client:
                result = await client.run("hello")
                owners.append(owner_pid(await store.owner(session_id)))
            assert result.reason == "done" and result.text, result.events
        # Both sessions ran in forked workers (the kernel picks which), not in the master.
        assert all(pid is not None and pid != master.pid for pid in owners), owners
        assert "workers: 2" in master.output()
        await until(lambda: master.alive, 1, "the master still runs")
    finally:
        await store.close()
        code = await asyncio.to_thread(master.stop)
    assert code == 0, master.output()


async def test_forked_workers_log_as_json_when_asked(redis: RedisServer, cluster_name: str) -> None:
    master = Process(
        "serve --workers 2 --log-format json",
        serve("--workers", "2", "--port", str(free_port()), "--log-format", "json"),
        worker_env(redis.url, cluster_name),
    )
    try:
        started = await asyncio.to_thread(
            master.wait_line, "Application startup complete.", READY_S, 2
        )
        assert started, master.output()
    finally:
        code = await asyncio.to_thread(master.stop)
    assert code == 0, master.output()
    # uvicorn's own lines from each worker, start to shutdown: all of them one JSON object.
    said = ("server process", "application startup", "shutting down")
    lines = [line.text for line in master.lines if any(s in line.text.lower() for s in said)]
    records = [json.loads(text) for text in lines]
    assert all(r["logger"] == "uvicorn.error" and r["level"] == "info" for r in records), lines
    messages = [r["message"] for r in records]
    assert messages.count("Application startup complete.") == 2, messages
    started_pids = {m.rsplit("[", 1)[1].rstrip("]") for m in messages if m.startswith("Started")}
    assert len(started_pids) == 2 and str(master.pid) not in started_pids, messages
    assert not [text for text in master.output().splitlines() if text.startswith("INFO:")]
