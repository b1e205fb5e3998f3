"""Pages of another origin in real Chromium: a bridge on 127.0.0.1, a page on 127.0.0.2.

Refused when the page's origin is not listed (the page sees close 4403, the server logs the
refusal, the SDK cannot even be loaded); allowed and working, SDK included, when it is; and a
page with an opaque origin (`Origin: null`, here a sandboxed frame) refused. (A top-level
`data:` page is no use here: in this Chromium its socket to loopback fails with 1006 before the
bridge sees a handshake.)
"""

from __future__ import annotations

import logging
from typing import Any

from playwright.async_api import Page

from bridge import BridgeSettings, create_app
from bridge.testing import RunningServer, serve_app
from tests.browser.conftest import SDK_DIR
from tests.security.wire import captured_logs

TIMEOUT_MS = 15_000

# A raw WebSocket from the page: hello, then the frame types seen and the close code.
RAW_SOCKET = """(base) => new Promise((resolve) => {
  const ws = new WebSocket(base.replace(/^http/, "ws") + "/ws/agent");
  const seen = [];
  ws.onopen = () => ws.send(JSON.stringify({type: "hello", protocol: 1, tools: []}));
  ws.onmessage = (e) => {
    const frame = JSON.parse(e.data);
    seen.push(frame.type);
    if (frame.type === "ready") ws.close(1000);
  };
  ws.onclose = (e) => resolve({code: e.code, seen});
  setTimeout(() => resolve({code: null, seen}), 10000);
})"""

LOAD_SDK = """(base) => import(base + "/sdk/index.js").then(
  (sdk) => typeof sdk.AgentBridge, (error) => "blocked: " + error.message)"""

# The SDK loaded cross-origin runs a whole question through the bridge with the offline model.
SDK_RUN = """async (base) => {
  const { AgentBridge } = await import(base + "/sdk/index.js");
  const bridge = new AgentBridge(base, { clientName: "other-origin", storage: null });
  const done = new Promise((resolve) => {
    bridge.on("runComplete", (event) => resolve(event.reason));
    bridge.on("status", (event) => { if (event.status === "closed") resolve("closed"); });
  });
  await new Promise((resolve) => {
    bridge.on("status", (event) => { if (event.status === "open") resolve(); });
  });
  bridge.send("hello from another origin");
  const late = new Promise((resolve) => setTimeout(() => resolve("timeout"), 10000));
  const reason = await Promise.race([done, late]);
  bridge.bye();
  return reason;
}"""


def bridge_app(**settings: Any) -> Any:
    return create_app(BridgeSettings(**settings), static_mounts={"/sdk": SDK_DIR})


async def test_a_page_on_an_unlisted_origin_is_refused(
    page: Page, other_site: RunningServer
) -> None:
    async with serve_app(bridge_app()) as bridge:
        await page.goto(other_site.http_url + "/", timeout=TIMEOUT_MS)
        with captured_logs() as logs:
            result = await page.evaluate(RAW_SOCKET, bridge.http_url)
        assert result == {"code": 4403, "seen": []}
        origin = other_site.http_url
        refusals = [
            r.getMessage()
            for r in logs.records
            if r.levelno == logging.WARNING and "refused a WebSocket" in r.getMessage()
        ]
        assert len(refusals) == 1 and origin in refusals[0]
        # The SDK is not served to it either (no CORS headers, so the browser blocks it).
        assert (await page.evaluate(LOAD_SDK, bridge.http_url)).startswith("blocked")


async def test_a_page_on_a_listed_origin_loads_the_sdk_and_works(
    page: Page, other_site: RunningServer
) -> None:
    async with serve_app(bridge_app(allowed_origins=[other_site.http_url])) as bridge:
        await page.goto(other_site.http_url + "/", timeout=TIMEOUT_MS)
        assert await page.evaluate(RAW_SOCKET, bridge.http_url) == {
            "code": 1000,
            "seen": ["ready"],
        }
        assert await page.evaluate(LOAD_SDK, bridge.http_url) == "function"
        assert await page.evaluate(SDK_RUN, bridge.http_url) == "done"


async def test_an_opaque_origin_is_refused(page: Page, other_site: RunningServer) -> None:
    async with serve_app(bridge_app(allowed_origins=[other_site.http_url])) as bridge:
        # A sandboxed frame (no allow-same-origin) inside a listed page: its origin is `null`.
        await page.goto(other_site.http_url + "/", timeout=TIMEOUT_MS)
        await page.evaluate(
            """() => {
              const frame = document.createElement("iframe");
              frame.setAttribute("sandbox", "allow-scripts");
              frame.srcdoc = "<p>sandboxed</p>";
              document.body.append(frame);
              return new Promise((resolve) => frame.addEventListener("load", resolve));
            }"""
        )
        sandboxed = page.frames[1]
        assert await sandboxed.evaluate("origin") == "null"
        with captured_logs() as logs:
            assert await sandboxed.evaluate(RAW_SOCKET, bridge.http_url) == {
                "code": 4403,
                "seen": [],
            }
        assert any("'null'" in r.getMessage() for r in logs.records)
