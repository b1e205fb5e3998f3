"""Stop in the demo page, against a scripted model that hangs mid-stream until cancelled."""

from __future__ import annotations

from playwright.async_api import Page, expect

from bridge.testing import Hang, ScriptedModel, call, serve_app
from tests.browser.conftest import demo_app

TIMEOUT_MS = 15_000


async def open_and_ask(page: Page, url: str, text: str) -> None:
    await page.goto(url + "/", timeout=TIMEOUT_MS)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
    await page.locator("#prompt").fill(text)
    await page.locator("#send").click()


async def test_stop_mid_stream_shows_a_stopped_run(page: Page) -> None:
    model = ScriptedModel([["Counting: one, ", "two, ", Hang()]])
    async with serve_app(demo_app(model)) as server:
        await open_and_ask(page, server.http_url, "count to a million")
        answer = page.locator(".message.assistant").last
        await expect(answer).to_contain_text("Counting: one, two,", timeout=TIMEOUT_MS)
        stop = page.locator("#stop")
        await expect(stop).to_be_enabled()
        await expect(answer.locator(".run-end")).to_have_count(0)

        await stop.click()

        await expect(answer.locator(".run-end")).to_have_attribute(
            "data-reason", "stopped", timeout=TIMEOUT_MS
        )
        await expect(answer.locator(".run-end")).to_contain_text("run stopped")
        await expect(stop).to_be_disabled()
        assert model.cancelled == 1


async def test_stop_while_the_confirm_card_waits_removes_it_and_cancels_the_call(
    page: Page,
) -> None:
    model = ScriptedModel([["Checking first. ", call("confirm", {"question": "Delete it all?"})]])
    async with serve_app(demo_app(model)) as server:
        await open_and_ask(page, server.http_url, "delete everything")
        question = page.locator(".tool-call[data-name='confirm'] .confirm")
        await expect(question).to_be_visible(timeout=TIMEOUT_MS)
        await expect(question.locator(".confirm-question")).to_have_text("Delete it all?")

        # The question is a card in the chat, not a modal: the Stop button is there to click.
        await page.locator("#stop").click()

        # tool_cancel aborted the handler's signal, and the demo removed the question on that.
        await expect(question).to_have_count(0, timeout=TIMEOUT_MS)
        card = page.locator(".tool-call[data-name='confirm']")
        await expect(card).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT_MS)
        answer = page.locator(".message.assistant").last
        await expect(answer.locator(".run-end")).to_have_attribute("data-reason", "stopped")
