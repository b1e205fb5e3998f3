"""The demo page in real Chromium against `agent-bridge serve` with the offline model."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.conftest import ARTIFACTS, ServeProcess, serve

TIMEOUT_MS = 15_000
CATALOG = [
    "clipboard_read",
    "clipboard_write",
    "confirm",
    "get_location",
    "get_selection",
    "local_storage_get",
    "local_storage_set",
    "navigate",
    "query_selector",
    "read_page",
]


async def open_demo(page: Page, server: ServeProcess) -> None:
    await page.goto(server.url + "/", timeout=TIMEOUT_MS)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)


async def ask(page: Page, text: str) -> None:
    await page.locator("#prompt").fill(text)
    await page.locator("#send").click()


async def test_the_demo_page_loads_connects_and_registers_the_catalog(
    page: Page, demo_server: ServeProcess
) -> None:
    await open_demo(page, demo_server)
    await expect(page).to_have_title("agent-bridge demo")
    await expect(page.locator("#status")).to_have_text("connected")
    tools = page.locator("#tools li")
    await expect(tools).to_have_count(len(CATALOG), timeout=TIMEOUT_MS)
    assert sorted(await tools.evaluate_all("items => items.map(i => i.dataset.tool)")) == CATALOG
    await expect(page.locator("#tools li.rejected")).to_have_count(0)
    assert await page.evaluate("window.demo.bridge.rejectedTools.length") == 0


async def test_a_question_runs_a_catalog_tool_in_the_page_and_the_answer_renders(
    page: Page, demo_server: ServeProcess
) -> None:
    await open_demo(page, demo_server)
    await ask(page, "What is the title of this page?")

    card = page.locator(".tool-call[data-name='read_page']")
    await expect(card).to_have_count(1, timeout=TIMEOUT_MS)
    # The status comes from the server's tool_result: the page's answer reached it and passed
    # the output schema.
    await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
    await expect(card).to_have_attribute("data-source", "client")
    await expect(card.locator(".arguments pre")).to_contain_text('"max_chars": 4000')
    await expect(card.locator(".result pre")).to_contain_text('"title": "agent-bridge demo"')

    answer = page.locator(".message.assistant").last
    await expect(answer.locator(".run-end")).to_have_attribute("data-reason", "done")
    await expect(answer).to_contain_text("read_page returned title: agent-bridge demo")
    await expect(page.locator("#stop")).to_be_disabled()

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "demo.png"))


async def test_confirm_approved_in_the_page_gives_ok(page: Page, demo_server: ServeProcess) -> None:
    await open_demo(page, demo_server)
    await ask(page, "Please confirm that I want to delete the file")

    # The question is a card in the conversation, not a modal over the page.
    card = page.locator(".tool-call[data-name='confirm']")
    question = card.locator(".confirm")
    await expect(question).to_be_visible(timeout=TIMEOUT_MS)
    await expect(question.locator(".confirm-question")).to_have_text(
        "Please confirm that I want to delete the file"
    )
    await expect(card.locator(".tool-status")).to_have_text("waiting for you")
    await expect(page.locator("dialog")).to_have_count(0)
    await question.locator(".confirm-approve").click()

    await expect(question).to_have_count(0)
    await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
    answer = page.locator(".message.assistant").last
    await expect(answer.locator(".run-end")).to_have_attribute("data-reason", "done")
    await expect(answer).to_contain_text("confirm returned: true")


async def test_confirm_denied_in_the_page_gives_denied(
    page: Page, demo_server: ServeProcess
) -> None:
    await open_demo(page, demo_server)
    await ask(page, "Please confirm that I want to delete the file")

    card = page.locator(".tool-call[data-name='confirm']")
    await card.locator(".confirm .confirm-deny").click(timeout=TIMEOUT_MS)

    await expect(card).to_have_attribute("data-status", "denied", timeout=TIMEOUT_MS)
    await expect(card.locator(".result pre")).to_contain_text("declined")
    answer = page.locator(".message.assistant").last
    await expect(answer.locator(".run-end")).to_have_attribute("data-reason", "done")
    await expect(answer).to_contain_text("confirm did not give a result")


async def test_killing_and_restarting_the_server_shows_disconnect_and_reconnect(
    page: Page,
) -> None:
    with serve() as first:
        await open_demo(page, first)
        port = first.port
        first.kill()
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "reconnecting", timeout=TIMEOUT_MS)
        await expect(status).to_contain_text("disconnected")
        # The server stays down for a while: the page keeps trying without filling the log.
        await expect(status).to_contain_text("(attempt 3)", timeout=TIMEOUT_MS)
        await expect(page.locator(".notice.disconnected")).to_have_count(1)
        # In words: no close code on screen.
        await expect(page.locator(".notice.disconnected")).to_have_text("connection lost")

    with serve(port) as second:
        await expect(page.locator("#status")).to_have_attribute(
            "data-state", "open", timeout=TIMEOUT_MS
        )
        await expect(page.locator(".notice.connected")).to_have_count(2)
        # The new server knows nothing of the old session: the hello re-registered the tools.
        await ask(page, "What is the title of this page?")
        card = page.locator(".tool-call[data-name='read_page']")
        await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        await expect(page.locator(".message.assistant").last).to_contain_text(
            "read_page returned title: agent-bridge demo"
        )
        assert second.process.poll() is None
