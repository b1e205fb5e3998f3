"""The packed SDK in a bundler-free page: a fresh project installs the `npm pack` tarball, and a
page maps the bare name `agent-bridge-client` to its `dist/index.js` with an import map, then
holds a conversation with a bridge on another port through the transcript model, as a
developer's own site would."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import Page
from starlette.staticfiles import StaticFiles

from bridge import BridgeSettings, create_app
from bridge.testing import ScriptedModel, call, serve_app
from tests.e2e.test_npm_pack import PACKAGE, install_packed

TIMEOUT_MS = 15_000

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>npm pack in a page</title>
<script type="importmap">
  {"imports": {"agent-bridge-client": "/node_modules/agent-bridge-client/dist/index.js"}}
</script>
<script type="module">
  import { AgentBridge, defineTool } from "agent-bridge-client";

  const bridge = new AgentBridge(new URLSearchParams(location.search).get("bridge"));
  bridge.registerTool(defineTool({
    name: "page_title",
    description: "The page's title.",
    parameters: { type: "object", properties: {} },
    readOnly: true,
    handler: () => ({ title: document.title }),
  }));
  window.bridge = bridge;
  window.result = bridge.send("what is the title?").then((r) => ({
    runId: r.runId, text: r.text, reason: r.reason,
    tools: r.toolResults.map((t) => [t.name, t.status]),
  }));
</script>
"""


async def test_a_page_imports_the_packed_sdk_through_an_import_map(
    page: Page, tmp_path: Path
) -> None:
    project = install_packed(tmp_path)
    assert (project / "node_modules" / PACKAGE / "package.json").is_file()
    (project / "index.html").write_text(PAGE)
    model = ScriptedModel([[call("page_title")], ["The title is known."]])
    bridge = create_app(BridgeSettings(), model=model)
    # The fresh project itself is the site: its page and its node_modules as installed, served as
    # plain files from another port (a loopback origin, which a bridge on loopback lets connect).
    site = StaticFiles(directory=project, html=True)
    async with serve_app(bridge) as server, serve_app(site) as files:
        problems: list[str] = []
        page.on("pageerror", lambda error: problems.append(str(error)))
        await page.goto(f"{files.http_url}/index.html?bridge={server.http_url}", timeout=TIMEOUT_MS)
        await page.wait_for_function("window.result !== undefined", timeout=TIMEOUT_MS)
        result = json.loads(await page.evaluate("window.result.then((r) => JSON.stringify(r))"))
        assert problems == []
        assert result["reason"] == "done"
        assert result["text"] == "The title is known."
        assert result["tools"] == [["page_title", "ok"]]
        turns = await page.evaluate(
            "window.bridge.messages.map((t) =>"
            " [t.role, t.role === 'user' ? t.text : t.parts.map((p) => p.type)])"
        )
        assert turns == [["user", "what is the title?"], ["assistant", ["tool", "text"]]]
        # One session per tab, made by the SDK and kept across a reload.
        session = await page.evaluate("window.bridge.sessionId")
        await page.reload()
        await page.wait_for_function(
            "window.bridge && window.bridge.status === 'open'", timeout=TIMEOUT_MS
        )
        assert await page.evaluate("window.bridge.sessionId") == session
