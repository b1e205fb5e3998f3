"""The SDK's connection duties in a real browser: heartbeat, token, the server's rejections."""

from __future__ import annotations

from playwright.async_api import Page, expect

from bridge import BridgeSettings
from bridge.testing import RunningServer, serve_app
from tests.browser.conftest import demo_app

TIMEOUT_MS = 15_000


async def test_the_page_answers_pings_and_keeps_its_connection(page: Page) -> None:
    settings = BridgeSettings(heartbeat_interval_s=0.05, heartbeat_timeout_s=2.0)
    async with serve_app(demo_app(settings=settings)) as server:
        await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
        # The page's CSP forbids string evaluation (wait_for_function needs it), so the count is
        # shown in the page and a locator waits on it.
        await page.evaluate(
            """() => {
              const shown = document.createElement("output");
              shown.id = "pings";
              shown.dataset.enough = "no";
              document.body.append(shown);
              let pings = 0;
              window.demo.bridge.on("message", (m) => {
                if (m.type !== "ping") return;
                pings += 1;
                shown.textContent = String(pings);
                if (pings >= 10) shown.dataset.enough = "yes";
              });
            }"""
        )
        # Each ping after the first needs the pong to the one before it, or the server closes.
        await expect(page.locator("#pings")).to_have_attribute(
            "data-enough", "yes", timeout=TIMEOUT_MS
        )
        await expect(status).to_have_attribute("data-state", "open")
        await expect(page.locator(".notice.disconnected")).to_have_count(0)


async def test_a_token_in_the_page_url_is_passed_on_and_a_wrong_one_is_final(page: Page) -> None:
    settings = BridgeSettings(token="s3cret")
    async with serve_app(demo_app(settings=settings)) as server:
        await page.goto(server.http_url + "/?token=wrong", timeout=TIMEOUT_MS)
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "closed", timeout=TIMEOUT_MS)
        # The close code is for developers (data-code); the person reads what it means.
        await expect(status).to_have_attribute("data-code", "4401")
        await expect(status).to_contain_text("access token")

        await page.goto(server.http_url + "/?token=s3cret", timeout=TIMEOUT_MS)
        await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)


async def test_the_servers_reasons_for_a_rejected_tool_reach_the_page(
    page: Page, in_process_demo: RunningServer
) -> None:
    await page.goto(in_process_demo.http_url + "/", timeout=TIMEOUT_MS)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
    await page.evaluate(
        """() => window.demo.bridge.registerTool({
          name: "broken",
          parameters: {
            type: "object",
            properties: { place: { $ref: "https://schemas.example/place.json" } },
          },
          handler: () => null,
        })"""
    )
    # The SDK refuses a malformed schema itself; a remote $ref is well formed, and only the
    # server (which never fetches one) says no, so this is its reason reaching the page.
    rejected = page.locator("#tools li.rejected[data-tool='broken']")
    await expect(rejected).to_contain_text("only local references", timeout=TIMEOUT_MS)
    codes = await page.evaluate("window.demo.bridge.rejectedTools.map((r) => r.code)")
    assert codes == ["network_ref"]
