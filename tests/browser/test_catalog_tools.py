"""Each catalog tool's implementation, run in Chromium; ok results checked against tools/*.json."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from bridge.limits import ToolLimits
from bridge.testing import RunningServer
from bridge.toolspec import ToolSpec, parse_tool

TOOLS_DIR = Path(__file__).resolve().parents[2] / "tools"
TIMEOUT_MS = 15_000

# Runs one tool's handler the way the SDK does, with a context of its own, and reports
# the outcome as data so the test sees error codes rather than a thrown exception.
RUN_TOOL = """
async ([name, args]) => {
  const sdk = await import("/sdk/index.js");
  const tool = sdk.browserTools().find((t) => t.name === name);
  const context = {
    id: "t1", runId: "r1", name, timeoutMs: 10000, interactive: !!tool.interactive,
    signal: new AbortController().signal,
    reportProgress() {},
    deny(message) { throw new sdk.ToolDenied(message); },
  };
  try {
    return { ok: true, value: await tool.handler(args, context) };
  } catch (error) {
    const { name: kind, code = null, message } = error;
    return { ok: false, name: kind, code, message: String(message) };
  }
}
"""


def spec(name: str) -> ToolSpec:
    return parse_tool(json.loads((TOOLS_DIR / f"{name}.json").read_text()), ToolLimits())


async def run_tool(page: Page, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    outcome: dict[str, Any] = await page.evaluate(RUN_TOOL, [name, args or {}])
    if outcome["ok"]:
        assert spec(name).validate_result(outcome["value"]) is None, outcome
    return outcome


async def ok(page: Page, name: str, args: dict[str, Any] | None = None) -> Any:
    outcome = await run_tool(page, name, args)
    assert outcome["ok"], outcome
    return outcome["value"]


async def demo(context: BrowserContext, server: RunningServer) -> Page:
    page = await context.new_page()
    await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
    return page


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context()
    try:
        yield made
    finally:
        await made.close()


async def test_page_selection_and_selector_tools(
    context: BrowserContext, in_process_demo: RunningServer
) -> None:
    page = await demo(context, in_process_demo)
    whole = await ok(page, "read_page", {"max_chars": 100_000})
    assert whole["title"] == "agent-bridge demo"
    assert whole["url"] == in_process_demo.http_url + "/"
    assert "About this page" in whole["text"] and not whole["truncated"]
    cut = await ok(page, "read_page", {"max_chars": 10})
    assert len(cut["text"]) == 10 and cut["truncated"]

    assert await ok(page, "get_selection") == {"text": ""}
    await page.evaluate(
        "getSelection().selectAllChildren(document.querySelector('#page-content h2'))"
    )
    assert await ok(page, "get_selection") == {"text": "About this page"}

    found = await ok(page, "query_selector", {"selector": "#page-content h2", "max_results": 1})
    assert found == {"count": 2, "matches": [{"tag": "h2", "text": "About this page"}]}
    bad = await run_tool(page, "query_selector", {"selector": "##"})
    assert (bad["ok"], bad["code"]) == (False, "invalid_selector")


async def test_local_storage_tools(context: BrowserContext, in_process_demo: RunningServer) -> None:
    page = await demo(context, in_process_demo)
    assert await ok(page, "local_storage_set", {"key": "colour", "value": "teal"}) == {
        "key": "colour",
        "previous": None,
    }
    assert await ok(page, "local_storage_get", {"key": "colour"}) == {
        "key": "colour",
        "value": "teal",
    }
    assert "colour" in (await ok(page, "local_storage_get"))["keys"]
    await ok(page, "local_storage_set", {"key": "colour", "value": None})
    assert await page.evaluate("localStorage.getItem('colour')") is None


async def test_clipboard_tools_with_permission(
    browser: Browser, in_process_demo: RunningServer
) -> None:
    context = await browser.new_context()
    try:
        await context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=in_process_demo.http_url
        )
        page = await demo(context, in_process_demo)
        await page.bring_to_front()
        assert await ok(page, "clipboard_write", {"text": "copied by the agent"}) == {"written": 19}
        assert await ok(page, "clipboard_read") == {"text": "copied by the agent"}
    finally:
        await context.close()


async def test_geolocation_when_allowed(browser: Browser, in_process_demo: RunningServer) -> None:
    context = await browser.new_context(geolocation={"latitude": 48.8584, "longitude": 2.2945})
    try:
        await context.grant_permissions(["geolocation"], origin=in_process_demo.http_url)
        page = await demo(context, in_process_demo)
        where = await ok(page, "get_location")
        assert (where["latitude"], where["longitude"]) == (48.8584, 2.2945)
    finally:
        await context.close()


async def test_geolocation_when_refused_is_a_clear_permission_error(
    context: BrowserContext, in_process_demo: RunningServer
) -> None:
    page = await demo(context, in_process_demo)
    refused = await run_tool(page, "get_location")
    assert refused["ok"] is False
    assert refused["code"] == "permission_denied"
    assert "location" in refused["message"]


async def test_default_confirm_dialog_approve_and_deny(
    context: BrowserContext, in_process_demo: RunningServer
) -> None:
    page = await demo(context, in_process_demo)
    # The model supplies only the question; the buttons' words are the page's own.
    for button, expected in (("Approve", True), ("Deny", False)):
        pending = asyncio.ensure_future(run_tool(page, "confirm", {"question": "Proceed?"}))
        dialog = page.locator("dialog.agent-bridge-confirm")
        await expect(dialog).to_be_visible(timeout=TIMEOUT_MS)
        await expect(dialog).to_contain_text("Proceed?")
        await dialog.get_by_role("button", name=button, exact=True).click()
        outcome = await asyncio.wait_for(pending, TIMEOUT_MS / 1000)
        if expected:
            assert outcome == {"ok": True, "value": {"confirmed": True}}
        else:
            assert (outcome["ok"], outcome["name"]) == (False, "ToolDenied")
        await expect(dialog).to_have_count(0)


async def test_navigate_leaves_the_page_after_answering(
    context: BrowserContext, in_process_demo: RunningServer
) -> None:
    page = await demo(context, in_process_demo)
    target = in_process_demo.http_url + "/?moved=1"
    assert await ok(page, "navigate", {"url": target}) == {"url": target, "new_tab": False}
    await expect(page).to_have_url(target, timeout=TIMEOUT_MS)
    refused = await run_tool(page, "navigate", {"url": "javascript:alert(1)"})
    assert (refused["ok"], refused["code"]) == (False, "invalid_url")


async def test_navigate_in_a_new_tab(
    context: BrowserContext, in_process_demo: RunningServer
) -> None:
    page = await demo(context, in_process_demo)
    target = in_process_demo.http_url + "/?tab=2"
    async with context.expect_page(timeout=TIMEOUT_MS) as opened:
        assert await ok(page, "navigate", {"url": target, "new_tab": True}) == {
            "url": target,
            "new_tab": True,
        }
    tab = await opened.value
    await expect(tab).to_have_url(target, timeout=TIMEOUT_MS)
    assert page.url == in_process_demo.http_url + "/"
