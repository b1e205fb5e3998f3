"""Real headless Chromium (Debian's package) driven by Playwright, against real servers.

Nothing here skips: without Chromium the tests fail and say how to install it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright

from bridge import BridgeSettings, create_app
from bridge.models.base import Model
from bridge.testing import RunningServer, serve_app

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / "examples" / "browser"
SDK_DIR = ROOT / "clients" / "js" / "dist"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("BRIDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STARTUP_TIMEOUT_S = 30.0


@pytest.fixture
def chromium() -> str:
    assert Path(CHROMIUM).is_file(), (
        f"Chromium not found at {CHROMIUM}: run `make chromium` as root "
        "(or `sudo apt-get install chromium`), or set BRIDGE_CHROMIUM"
    )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1180, "height": 860})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServeProcess:
    """`agent-bridge serve` as a subprocess, its output read by a thread so waits stay bounded."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        # A real model would need the network; the demo must work with the offline one.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BRIDGE_"))}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("agent-bridge")),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: str, timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no line matching {pattern!r} in time: {self.output}")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"server exited before {pattern!r}: {self.output}")
            self.output.append(line)
            if wanted.search(line):
                return line

    def wait_ready(self) -> None:
        self.wait_for(r"^agent-bridge serving http://127\.0\.0\.1:\d+")
        # The banner is printed before uvicorn binds; this line comes once it listens.
        self.wait_for(r"Uvicorn running on")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextlib.contextmanager
def serve(port: int | None = None) -> Iterator[ServeProcess]:
    server = ServeProcess(port or free_port())
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()


@pytest.fixture
def demo_server() -> Iterator[ServeProcess]:
    with serve() as server:
        yield server


def demo_app(model: Model | None = None, settings: BridgeSettings | None = None) -> FastAPI:
    """The demo as `agent-bridge serve` lays it out, in process, with the model of a test."""
    return create_app(
        settings or BridgeSettings(),
        model=model,
        static_dir=DEMO_DIR,
        static_mounts={"/sdk": SDK_DIR},
    )


@pytest.fixture
async def in_process_demo() -> AsyncIterator[RunningServer]:
    async with serve_app(demo_app()) as server:
        yield server


ORIGIN_PAGES = Path(__file__).resolve().parent / "pages" / "origins"


@contextlib.asynccontextmanager
async def other_origin() -> AsyncIterator[RunningServer]:
    """A plain page served from a second loopback origin (127.0.0.2, its own port): some other
    site as far as the browser and the bridge's origin check are concerned."""
    from starlette.staticfiles import StaticFiles

    async with serve_app(StaticFiles(directory=ORIGIN_PAGES, html=True), host="127.0.0.2") as site:
        yield site


@pytest.fixture
async def other_site() -> AsyncIterator[RunningServer]:
    async with other_origin() as site:
        yield site
