"""Approvals and per-call cancel in the demo, in real Chromium against the real server: the
approval card's approve, deny and edit paths, the cancel button of a running tool card, Stop while
a card is open, and an approval still open across a page reload.

The page gets two tools of its own next to the catalog (an init script registers them the moment
the demo publishes its bridge, so they go out in the hello of every load, reloads included):
`delete_file`, destructive, so the server asks before it runs; and `slow_task`, which works until
it is cancelled. Handler runs are counted in localStorage, which survives a reload.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page, expect

from bridge import BridgeSettings
from bridge.conversation import ToolResult
from bridge.testing import ScriptedModel, call, serve_app
from tests.browser.conftest import demo_app

TIMEOUT_MS = 15_000

PAGE_TOOLS = """
(() => {
  const bump = (name) => {
    const counts = JSON.parse(localStorage.getItem("counts") || "{}");
    counts[name] = (counts[name] || 0) + 1;
    localStorage.setItem("counts", JSON.stringify(counts));
  };
  window.seen = { requests: [], approvals: [] };
  let demo;
  Object.defineProperty(window, "demo", {
    configurable: true,
    get: () => demo,
    set: (value) => {
      demo = value;
      const bridge = value.bridge;
      bridge.on("toolRequest", (r) => window.seen.requests.push(r.name));
      bridge.on("approvalRequest", (a) => window.seen.approvals.push(a.id));
      bridge.registerTool({
        name: "delete_file",
        description: "Delete a file.",
        destructive: true,
        parameters: {
          type: "object",
          properties: { path: { type: "string", minLength: 1 } },
          required: ["path"],
          additionalProperties: false,
        },
        handler: (args) => {
          bump("delete_file");
          return { deleted: args.path };
        },
      });
      bridge.registerTool({
        name: "slow_task",
        description: "Work until cancelled.",
        parameters: { type: "object" },
        handler: (_args, ctx) => {
          bump("slow_task");
          return new Promise((_resolve, reject) => {
            ctx.signal.addEventListener("abort", () => {
              localStorage.setItem("abort_reason", ctx.signal.reason.reason);
              reject(ctx.signal.reason);
            });
          });
        },
      });
    },
  });
})();
"""


def settings() -> BridgeSettings:
    # The default policy, spelled out: destructive tools ask, the rest run.
    return BridgeSettings(approval="destructive")


async def open_demo(page: Page, url: str) -> None:
    await page.add_init_script(PAGE_TOOLS)
    await page.goto(url + "/", timeout=TIMEOUT_MS)
    await expect(page.locator("#status")).to_have_attribute(
        "data-state", "open", timeout=TIMEOUT_MS
    )
    await expect(page.locator("#tools li[data-tool='delete_file']")).to_have_count(1)


async def ask(page: Page, text: str) -> None:
    await page.locator("#prompt").fill(text)
    await page.locator("#send").click()


async def counts(page: Page) -> dict[str, int]:
    found: dict[str, int] = await page.evaluate(
        "JSON.parse(localStorage.getItem('counts') || '{}')"
    )
    return found


def results_read_by_model(model: ScriptedModel, step: int = 1) -> list[ToolResult]:
    return [t for t in model.requests[step] if isinstance(t, ToolResult)]


async def run_ends(page: Page, reason: str) -> None:
    answer = page.locator(".message.assistant").last
    await expect(answer.locator(".run-end")).to_have_attribute(
        "data-reason", reason, timeout=TIMEOUT_MS
    )


async def test_approve_runs_the_tool_once_and_stop_stays_clickable(page: Page) -> None:
    model = ScriptedModel([[call("delete_file", {"path": "/tmp/report.txt"})], ["Deleted."]])
    async with serve_app(demo_app(model, settings())) as server:
        await open_demo(page, server.http_url)
        await ask(page, "delete the report")
        card = page.locator(".tool-call[data-name='delete_file']")
        approval = card.locator(".approval")
        await expect(approval).to_be_visible(timeout=TIMEOUT_MS)
        await expect(card).to_have_attribute("data-status", "approval")
        await expect(approval.locator(".approval-reason")).to_contain_text(
            "this tool needs your approval"
        )
        await expect(card.locator(".arguments pre")).to_contain_text('"path": "/tmp/report.txt"')
        for label in ("Approve", "Deny", "Always for this session"):
            await expect(approval.get_by_role("button", name=label, exact=True)).to_be_visible()
        # Nothing modal: Stop can be clicked while the card waits (trial: checked, not clicked).
        await expect(page.locator("#stop")).to_be_enabled()
        await page.locator("#stop").click(trial=True, timeout=TIMEOUT_MS)
        assert await page.evaluate("window.seen.requests") == []

        await approval.get_by_role("button", name="Approve", exact=True).click()
        await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        await expect(approval).to_have_count(0)
        await expect(card.locator(".result pre")).to_contain_text('"deleted": "/tmp/report.txt"')
        await run_ends(page, "done")
        assert await counts(page) == {"delete_file": 1}
        assert await page.evaluate("window.seen.requests") == ["delete_file"]
    [result] = results_read_by_model(model)
    assert result.status.value == "ok" and result.data == {"deleted": "/tmp/report.txt"}


async def test_deny_tells_the_model_and_the_page_never_gets_the_call(page: Page) -> None:
    model = ScriptedModel([[call("delete_file", {"path": "/tmp/report.txt"})], ["Kept it."]])
    async with serve_app(demo_app(model, settings())) as server:
        await open_demo(page, server.http_url)
        await ask(page, "delete the report")
        card = page.locator(".tool-call[data-name='delete_file']")
        approval = card.locator(".approval")
        await expect(approval).to_be_visible(timeout=TIMEOUT_MS)
        await approval.locator(".deny-reason").fill("I still need that report")
        await approval.get_by_role("button", name="Deny", exact=True).click()
        await expect(card).to_have_attribute("data-status", "denied", timeout=TIMEOUT_MS)
        await expect(card.locator(".tool-status")).to_have_text("denied")
        await expect(card.locator(".result pre")).to_contain_text("I still need that report")
        await run_ends(page, "done")
        assert await counts(page) == {}
        assert await page.evaluate("window.seen.requests") == []
    [result] = results_read_by_model(model)
    assert result.status.value == "denied"
    assert "I still need that report" in result.content


async def test_an_invalid_edit_is_refused_on_the_card_and_a_valid_one_runs(page: Page) -> None:
    # The catalog's own destructive tool; the URL stays on this page so the test can watch it.
    model = ScriptedModel([])
    async with serve_app(demo_app(model, settings())) as server:
        model.steps += [[call("navigate", {"url": server.http_url + "/#asked"})], ["Went."]]
        await open_demo(page, server.http_url)
        await ask(page, "go somewhere")
        card = page.locator(".tool-call[data-name='navigate']")
        approval = card.locator(".approval")
        await expect(approval).to_be_visible(timeout=TIMEOUT_MS)
        editor = approval.locator("textarea.approval-arguments")
        error = approval.locator(".approval-error")
        approve = approval.get_by_role("button", name="Approve", exact=True)
        await approval.locator("summary").click()
        await expect(editor).to_have_value(f'{{\n  "url": "{server.http_url}/#asked"\n}}')

        # Not JSON: caught in the page, nothing is sent.
        await editor.fill('{"url": ')
        await approve.click()
        await expect(error).to_contain_text("not valid JSON")
        await expect(editor).to_have_attribute("aria-invalid", "true")

        # JSON, but not what the schema allows: the server refuses, the request stays open.
        await editor.fill('{"url": "ftp://elsewhere"}')
        await approve.click()
        await expect(error).to_contain_text("The server refused these arguments")
        await expect(error).to_contain_text("/url")
        await expect(card).to_have_attribute("data-status", "approval")
        await expect(page.locator(".notice.error")).to_have_count(0)

        edited = server.http_url + "/#edited"
        await editor.fill(f'{{"url": "{edited}"}}')
        await approve.click()
        await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        await expect(approval).to_have_count(0)
        await expect(card.locator(".result pre")).to_contain_text(edited)
        # The demo's CSP forbids evaluated strings, so wait_for_function is out; the URL says it.
        await expect(page).to_have_url(edited, timeout=TIMEOUT_MS)
        await run_ends(page, "done")
    [result] = results_read_by_model(model)
    assert result.status.value == "ok" and result.data == {"url": edited, "new_tab": False}


async def test_cancel_on_a_running_tool_card_aborts_its_handler(page: Page) -> None:
    model = ScriptedModel([[call("slow_task")], ["Carried on without it."]])
    async with serve_app(demo_app(model, settings())) as server:
        await open_demo(page, server.http_url)
        await ask(page, "start the slow task")
        card = page.locator(".tool-call[data-name='slow_task']")
        await expect(card).to_have_attribute("data-status", "running", timeout=TIMEOUT_MS)
        await card.get_by_role("button", name="Cancel", exact=True).click()
        await expect(card).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT_MS)
        await expect(card.locator(".tool-status")).to_have_text("cancelled by you")
        await expect(card.locator(".outcome")).to_contain_text("You cancelled this call")
        await expect(card.locator(".cancel-call")).to_have_count(0)
        await run_ends(page, "done")
        await expect(page.locator(".message.assistant").last).to_contain_text(
            "Carried on without it."
        )
        assert await page.evaluate("localStorage.getItem('abort_reason')") == "by_user"
        assert await counts(page) == {"slow_task": 1}
    [result] = results_read_by_model(model)
    assert result.status.value == "cancelled" and "by_user" in result.content


async def test_stop_while_an_approval_card_is_open(page: Page) -> None:
    model = ScriptedModel([[call("delete_file", {"path": "/tmp/a"})], ["never"]])
    async with serve_app(demo_app(model, settings())) as server:
        await open_demo(page, server.http_url)
        await ask(page, "delete a")
        card = page.locator(".tool-call[data-name='delete_file']")
        await expect(card.locator(".approval")).to_be_visible(timeout=TIMEOUT_MS)
        await page.locator("#stop").click()
        await expect(card).to_have_attribute("data-status", "cancelled", timeout=TIMEOUT_MS)
        await expect(card.locator(".tool-status")).to_have_text("cancelled: run stopped")
        await expect(card.locator(".approval")).to_have_count(0)
        await run_ends(page, "stopped")
        assert await counts(page) == {}


async def test_an_approval_open_across_a_reload_is_shown_again_and_runs_once(
    page: Page,
) -> None:
    model = ScriptedModel([[call("delete_file", {"path": "/tmp/old.log"})], ["Deleted."]])
    async with serve_app(demo_app(model, settings())) as server:
        await open_demo(page, server.http_url)
        await ask(page, "delete the old log")
        approval = page.locator(".approval")
        await expect(approval).to_have_count(1, timeout=TIMEOUT_MS)

        await page.reload(timeout=TIMEOUT_MS)
        await expect(page.locator("#status")).to_have_attribute(
            "data-state", "open", timeout=TIMEOUT_MS
        )
        await expect(page.locator(".notice.resumed")).to_have_count(1, timeout=TIMEOUT_MS)
        card = page.locator(".tool-call[data-name='delete_file']")
        await expect(card).to_have_count(1)
        await expect(approval).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(card.locator(".arguments pre")).to_contain_text("/tmp/old.log")
        await expect(page.locator("#log")).to_contain_text("delete the old log")
        await expect(page.locator("#stop")).to_be_enabled()
        seen: list[Any] = await page.evaluate("window.seen.approvals")
        assert len(seen) == 1

        await approval.get_by_role("button", name="Approve", exact=True).click()
        await expect(card).to_have_attribute("data-status", "ok", timeout=TIMEOUT_MS)
        await run_ends(page, "done")
        assert await counts(page) == {"delete_file": 1}
        assert await page.evaluate("window.seen.approvals") == seen
    [result] = results_read_by_model(model)
    assert result.status.value == "ok" and result.data == {"deleted": "/tmp/old.log"}
