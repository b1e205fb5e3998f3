"""A page reload in the middle of a tool call, in real Chromium: the SDK resumes the session from
`sessionStorage`, a read-only tool runs again and completes, a tool that may not run twice ends
`outcome_unknown` without its handler running again, and the demo rebuilds its history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from bridge import BridgeSettings, create_app
from bridge.testing import ScriptedModel, call, serve_app
from tests.browser.conftest import SDK_DIR, demo_app

TIMEOUT_MS = 15_000
PAGE_DIR = Path(__file__).parent / "pages" / "reload"


async def counts(page: Page) -> dict[str, int]:
    found: dict[str, int] = await page.evaluate(
        "JSON.parse(localStorage.getItem('counts') || '{}')"
    )
    return found


@pytest.mark.parametrize(
    ("tool", "after_reload", "runs"),
    [("slow_read", "ok", 2), ("slow_write", "outcome_unknown", 1)],
)
async def test_a_reload_mid_call_resumes_and_never_runs_a_write_twice(
    page: Page, tool: str, after_reload: str, runs: int
) -> None:
    model = ScriptedModel([[call(tool)], ["finished"]])
    app = create_app(
        BridgeSettings(), model=model, static_dir=PAGE_DIR, static_mounts={"/sdk": SDK_DIR}
    )
    async with serve_app(app) as server:
        await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
        await expect(page.locator("#status")).to_have_text("open", timeout=TIMEOUT_MS)
        await page.evaluate("() => { window.bridge.send('go'); }")
        await expect(page.locator("#counts")).to_have_text(
            json.dumps({tool: 1}, separators=(",", ":")), timeout=TIMEOUT_MS
        )
        await page.evaluate("sessionStorage.setItem('reloaded', '1')")
        await page.reload(timeout=TIMEOUT_MS)
        await expect(page.locator("#completed")).to_have_text("done", timeout=TIMEOUT_MS)
        results: list[dict[str, Any]] = await page.evaluate("window.results")
        completed = await page.evaluate("window.completed")
        resumed = await page.evaluate("window.resumedEvents.map((e) => e.reload)")
        assert (await counts(page)).get(tool) == runs
    assert results == [{"name": tool, "status": after_reload}]
    assert completed == ["done"] and resumed == [True]
    answered = [t for t in model.requests[1] if getattr(t, "call_id", None)]
    assert [t.status.value for t in answered] == [after_reload]  # type: ignore[attr-defined]


async def test_the_demo_rebuilds_its_history_after_a_reload(page: Page) -> None:
    async with serve_app(demo_app(ScriptedModel([["The answer is 42."]]))) as server:
        await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
        await page.fill("#prompt", "what is the answer?")
        await page.keyboard.press("Enter")
        log = page.locator("#log")
        await expect(log).to_contain_text("The answer is 42.", timeout=TIMEOUT_MS)
        await page.reload(timeout=TIMEOUT_MS)
        await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
        await expect(log).to_contain_text("what is the answer?", timeout=TIMEOUT_MS)
        await expect(log).to_contain_text("The answer is 42.", timeout=TIMEOUT_MS)
