"""The SDK's connection duties in a real browser: heartbeat, token and tickets, the server's
rejections."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

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


# Opens a socket with a ticket the page already used: the server must refuse it (4401).
REUSE_TICKET = """(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onclose = (e) => resolve(e.code);
  ws.onopen = () => ws.send(JSON.stringify({type: "hello", protocol: 1, tools: []}));
})"""


async def test_the_demo_asks_for_the_token_and_connects_with_single_use_tickets(
    page: Page,
) -> None:
    settings = BridgeSettings(token="s3cret")
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    async with serve_app(demo_app(settings=settings)) as server:
        await page.goto(server.http_url + "/", timeout=TIMEOUT_MS)
        status = page.locator("#status")
        form = page.locator("#token-form")
        # No token yet: the server refuses the page (4401), and the page asks for one.
        await expect(form).to_be_visible(timeout=TIMEOUT_MS)
        await expect(status).to_have_attribute("data-state", "closed")
        await expect(status).to_have_attribute("data-code", "4401")
        await expect(status).to_contain_text("access token")
        await expect(page.locator("#token-problem")).to_have_text(
            "This server needs an access token."
        )
        assert len(sockets) == 1 and urlsplit(sockets[0]).query == ""

        # A wrong token fails clearly: its ticket request is refused, no socket is opened.
        await page.locator("#token").fill("wrong")
        await page.locator("#token-form button").click()
        await expect(page.locator("#token-problem")).to_have_text(
            "The server refused that token.", timeout=TIMEOUT_MS
        )
        await expect(form).to_be_visible()
        await expect(status).to_have_attribute("data-state", "closed")
        await expect(status).to_contain_text("access token")
        assert len(sockets) == 1

        await page.locator("#token").fill("s3cret")
        await page.locator("#token-form button").click()
        await expect(status).to_have_attribute("data-state", "open", timeout=TIMEOUT_MS)
        await expect(form).to_be_hidden()

        # A reconnect (the same session, resumed) trades the token for a fresh ticket again.
        await page.evaluate("() => { window.demo.bridge.close(); window.demo.bridge.connect(); }")
        await expect(page.locator(".notice.resumed")).to_have_count(1, timeout=TIMEOUT_MS)
        await expect(status).to_have_attribute("data-state", "open")

        assert len(sockets) == 3
        tickets = [parse_qs(urlsplit(url).query) for url in sockets[1:]]
        assert all(set(query) == {"ticket"} for query in tickets), sockets
        assert tickets[0]["ticket"] != tickets[1]["ticket"]
        # The token went nowhere but an Authorization header: not the URL, not the storage.
        assert "s3cret" not in page.url
        stored = await page.evaluate(
            "() => JSON.stringify([{...sessionStorage}, {...localStorage}])"
        )
        assert "s3cret" not in stored
        # Each ticket was good once.
        assert await page.evaluate(REUSE_TICKET, sockets[1]) == 4401

        # A reload forgets the token: the page asks again.
        await page.reload(timeout=TIMEOUT_MS)
        await expect(form).to_be_visible(timeout=TIMEOUT_MS)


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
