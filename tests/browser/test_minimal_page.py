"""examples/minimal-page in real Chromium: the page connects, the offline model calls the page's
one tool, and the conversation shows the question, the call and the answer."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from playwright.async_api import Page, expect

from bridge.testing import serve_app

TIMEOUT_MS = 15_000
LAUNCHER = Path(__file__).resolve().parents[2] / "examples" / "minimal-page" / "serve.py"


def launcher() -> ModuleType:
    # The folder's name has a dash, as example folders do: load the file, not a package.
    spec = importlib.util.spec_from_file_location("minimal_page_serve", LAUNCHER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_page_is_small_and_has_no_inline_script() -> None:
    html = (LAUNCHER.parent / "index.html").read_text()
    script = (LAUNCHER.parent / "app.js").read_text()
    assert '<script type="module" src="app.js"></script>' in html
    assert html.count("<script") == 1
    assert len(html.splitlines()) + len(script.splitlines()) <= 45


async def test_the_minimal_page_runs_a_tool_call(
    page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The offline model, whatever the machine running the tests has configured.
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "BRIDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    async with serve_app(launcher().make_app()) as server:
        await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
        await expect(page.locator("#status")).to_have_text("open", timeout=TIMEOUT_MS)

        await page.locator("#prompt").fill("What time is it?")
        await page.locator("#prompt").press("Enter")

        log = page.locator("#log")
        await expect(log.locator("p.you")).to_have_text("What time is it?")
        await expect(log.locator("p.tool")).to_have_text("(get_time: ok)", timeout=TIMEOUT_MS)
        answer = log.locator("p.agent").last
        await expect(answer).to_contain_text("get_time returned", timeout=TIMEOUT_MS)
        await expect(answer).to_contain_text(":")  # a time such as 10:42:07
