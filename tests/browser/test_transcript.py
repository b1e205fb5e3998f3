"""The SDK's transcript model drives a page with no bookkeeping of its own, in real Chromium:
through a tool call, a stop and a reload (rebuilt from the resume), and two tabs with default
options keep two sessions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from bridge import BridgeSettings, create_app
from bridge.testing import Hang, ScriptedModel, call, serve_app
from tests.browser.conftest import SDK_DIR

TIMEOUT_MS = 15_000
PAGE_DIR = Path(__file__).parent / "pages" / "transcript"


async def transcript(page: Page) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = json.loads(
        await page.locator("#transcript").text_content() or "[]"
    )
    return shown


async def test_a_tool_call_a_stop_and_a_reload_through_the_transcript(browser: Browser) -> None:
    model = ScriptedModel([["Let me look. ", call("page_title")], ["The title is ", Hang()]])
    app = create_app(
        BridgeSettings(), model=model, static_dir=PAGE_DIR, static_mounts={"/sdk": SDK_DIR}
    )
    context = await browser.new_context()
    async with serve_app(app) as server:
        page = await context.new_page()
        await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
        shown = page.locator("#transcript")
        await expect(page.locator("#session")).not_to_be_empty(timeout=TIMEOUT_MS)
        await page.evaluate("() => { window.bridge.send('what is the title?'); }")
        await expect(shown).to_contain_text("The title is", timeout=TIMEOUT_MS)
        await page.evaluate("() => { window.bridge.stop(); }")
        await expect(shown).to_contain_text('"reason":"stopped"', timeout=TIMEOUT_MS)
        before = await transcript(page)
        session = await page.locator("#session").text_content()
        await page.reload(timeout=TIMEOUT_MS)
        await expect(page.locator("#session")).to_have_text(session or "", timeout=TIMEOUT_MS)
        await expect(shown).to_contain_text("what is the title?", timeout=TIMEOUT_MS)
        after = await transcript(page)
    await context.close()
    assert before == [
        {"role": "user", "text": "what is the title?"},
        {
            "role": "assistant",
            "text": "Let me look. The title is ",
            "reason": "stopped",
            "tools": [["page_title", "ok"]],
        },
    ]
    # Rebuilt from the snapshot: the same turns, text and tool results (a snapshot does not say
    # how a run it did not see end ended).
    assert [(t["role"], t["text"]) for t in after] == [(t["role"], t["text"]) for t in before]
    assert after[1]["tools"] == [["page_title", "ok"]]


async def test_two_tabs_with_default_options_keep_two_sessions(browser: Browser) -> None:
    app = create_app(
        BridgeSettings(),
        model=ScriptedModel([["one"], ["two"]]),
        static_dir=PAGE_DIR,
        static_mounts={"/sdk": SDK_DIR},
    )
    context = await browser.new_context()
    async with serve_app(app) as server:
        first, second = await context.new_page(), await context.new_page()
        for tab in (first, second):
            await tab.goto(server.http_url + "/", timeout=TIMEOUT_MS)
            await expect(tab.locator("#session")).not_to_be_empty(timeout=TIMEOUT_MS)
        for tab, text in ((first, "one"), (second, "two")):
            await tab.evaluate("() => { window.bridge.send('hello'); }")
            await expect(tab.locator("#transcript")).to_contain_text(text, timeout=TIMEOUT_MS)
        ids = [await tab.locator("#session").text_content() for tab in (first, second)]
        hub = app.state.bridge.hub
        both_connected = hub.connected
    await context.close()
    assert ids[0] != ids[1]
    assert both_connected == 2, "neither tab evicted the other"
