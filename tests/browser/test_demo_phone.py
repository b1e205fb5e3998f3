"""The demo as a person uses it: on a phone, with a confirmation open, selecting text to ask
about, and without a single failed request (the favicon included)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, Request, Response, expect

from bridge.testing import RunningServer, ScriptedModel, call, serve_app
from tests.browser.conftest import demo_app

TIMEOUT_MS = 15_000
PHONE = {"width": 375, "height": 740}


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        await context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


async def open_demo(page: Page, server: RunningServer) -> None:
    await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "open", timeout=TIMEOUT_MS
    )


async def ask(page: Page, text: str) -> None:
    await page.locator("#prompt").fill(text)
    await page.locator("#send").click()


async def page_width(page: Page) -> int:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width


async def test_at_375_px_nothing_overflows_and_stop_works_on_an_open_confirmation(
    phone: Page,
) -> None:
    model = ScriptedModel(
        [
            ["Reading first. ", call("read_page", {"max_chars": 100000})],
            ["Checking. ", call("confirm", {"question": "Replace every price on the page?"})],
        ]
    )
    async with serve_app(demo_app(model)) as server:
        await open_demo(phone, server)
        assert await page_width(phone) <= PHONE["width"]

        await ask(phone, "check the prices and then replace them all")
        read = phone.locator(".tool-call[data-name='read_page']")
        await expect(read).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        question = phone.locator(".tool-call[data-name='confirm'] .confirm")
        await expect(question).to_be_visible(timeout=TIMEOUT_MS)
        # A long result, a question card and both buttons, and still no sideways scrolling.
        assert await page_width(phone) <= PHONE["width"]
        stop = phone.locator("#stop")
        await expect(stop).to_be_in_viewport()
        box = await stop.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"]

        # Stop is a plain button on the page while the question waits: nothing modal in the way.
        await stop.tap()
        await expect(question).to_have_count(0, timeout=TIMEOUT_MS)
        card = phone.locator(".tool-call[data-name='confirm']")
        await expect(card).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT_MS)
        answer = phone.locator(".message.assistant").last
        await expect(answer.locator(".run-end")).to_have_attribute("data-reason", "stopped")
        await expect(answer.locator(".run-end")).to_have_text("run stopped")
        assert await page_width(phone) <= PHONE["width"]


async def test_a_selection_survives_clicking_into_the_prompt(page: Page) -> None:
    async with serve_app(demo_app()) as server:
        await open_demo(page, server)
        paragraph = page.locator("#page-content p").first
        # A person's selection: three clicks select the paragraph.
        await paragraph.click(click_count=3)
        selected = (await page.evaluate("getSelection().toString()")).strip()
        assert selected.startswith("This page registers the standard browser tools")

        # Clicking into the prompt moves the document's selection into the input.
        await page.locator("#prompt").click()
        await page.keyboard.type("What did I select?")
        assert await page.evaluate("getSelection().toString()") == ""
        await page.keyboard.press("Enter")

        card = page.locator(".tool-call[data-name='get_selection']")
        await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        await expect(card.locator(".result pre")).to_contain_text(
            "This page registers the standard browser tools"
        )
        await expect(page.locator(".message.assistant").last).to_contain_text(
            "get_selection returned: This page registers"
        )

        # Text selected in the prompt itself is not what the person means by "my selection".
        await page.locator("#prompt").fill("What did I select just now?")
        await page.locator("#prompt").select_text()
        await page.keyboard.press("Enter")
        second = page.locator(".tool-call[data-name='get_selection']").nth(1)
        await expect(second).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        await expect(second.locator(".result pre")).to_contain_text(
            "This page registers the standard browser tools"
        )


async def test_no_request_fails_and_the_page_has_a_favicon(page: Page) -> None:
    failed: list[str] = []

    def on_response(response: Response) -> None:
        if response.status >= 400:
            failed.append(f"{response.status} {response.url}")

    def on_failed(request: Request) -> None:
        failed.append(f"failed {request.url}")

    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    async with serve_app(demo_app()) as server:
        await open_demo(page, server)
        await ask(page, "What is the title of this page?")
        card = page.locator(".tool-call[data-name='read_page']")
        await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        icon = await page.evaluate("document.querySelector('link[rel=icon]')?.href")
        assert icon == server.http_url + "/favicon.svg"
        # Fetched as a browser would, since headless Chromium may not ask for it by itself.
        fetched = await page.request.get(icon)
        assert fetched.ok and "svg" in fetched.headers["content-type"]
    assert failed == []


async def test_greeting_and_run_endings_read_as_words(page: Page) -> None:
    async with serve_app(demo_app()) as server:
        await open_demo(page, server)
        await ask(page, "hello")
        answer = page.locator(".message.assistant").last
        await expect(answer.locator(".run-end")).to_have_text("done", timeout=TIMEOUT_MS)
        await expect(answer).to_contain_text("Hello! I am the offline model")
        assert "step" not in await answer.inner_text()
        await expect(page.locator(".notice.connected")).to_have_text("connected to the agent")
