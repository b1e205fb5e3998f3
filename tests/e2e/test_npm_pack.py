"""The browser SDK as a developer gets it: `npm pack` makes a tarball that a fresh project installs
without the registry (the package has no runtime dependencies) and imports in Node, with its
types resolving in a TypeScript consumer. The browser half (an import map in a page) is in
tests/browser/test_npm_pack_browser.py and uses `install_packed` from here."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

JS_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
PACKAGE = "agent-bridge-client"


def tool(name: str) -> str:
    found = shutil.which(name)
    assert found is not None, f"{name} is needed for the browser SDK (Node.js 20+, see README)"
    return found


def run(args: list[str], cwd: Path, timeout: float = 120) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def pack(into: Path) -> Path:
    """`npm pack` of clients/js into `into`; the tarball's path."""
    out = run([tool("npm"), "pack", "--json", "--pack-destination", str(into)], JS_DIR)
    [report] = json.loads(out)
    tarball = into / str(report["filename"])
    assert tarball.is_file()
    return tarball


def install_packed(directory: Path) -> Path:
    """A fresh project in `directory` with the packed SDK installed from its tarball, offline."""
    tarball = pack(directory)
    project = directory / "consumer"
    project.mkdir()
    (project / "package.json").write_text(
        json.dumps({"name": "consumer", "version": "1.0.0", "private": True, "type": "module"})
    )
    # --offline: nothing may come from a registry; a package without dependencies needs nothing.
    run(
        [
            tool("npm"),
            "install",
            "--offline",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            str(tarball),
        ],
        project,
    )
    assert (project / "node_modules" / PACKAGE / "dist" / "index.js").is_file()
    return project


def test_the_tarball_holds_the_built_package_and_nothing_else(tmp_path: Path) -> None:
    tarball = pack(tmp_path)
    with tarfile.open(tarball) as archive:
        names = {member.name.removeprefix("package/") for member in archive.getmembers()}
    for needed in (
        "package.json",
        "README.md",
        "dist/index.js",
        "dist/index.d.ts",
        "dist/client.js",
    ):
        assert needed in names, needed
    assert not any(name.startswith(("test/", "node_modules/", "scripts/")) for name in names)
    manifest = json.loads((JS_DIR / "package.json").read_text())
    assert manifest["name"] == PACKAGE
    assert manifest.get("dependencies", {}) == {}


def test_a_fresh_project_installs_it_offline_and_imports_it_in_node(tmp_path: Path) -> None:
    project = install_packed(tmp_path)
    (project / "main.mjs").write_text(
        """
import {
  AgentBridge, defineTool, browserTools, CATALOG_TOOL_NAMES, PROTOCOL_VERSION,
} from "agent-bridge-client";

const tool = defineTool({
  name: "echo",
  parameters: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  handler: ({ text }) => text,
});
const bridge = new AgentBridge(
  "ws://127.0.0.1:9", { sessionId: "s", autoConnect: false, storage: null },
);
bridge.registerTool(tool);
console.log(JSON.stringify({
  bridge: typeof AgentBridge,
  protocol: PROTOCOL_VERSION,
  tools: bridge.toolNames,
  catalog: browserTools().length === CATALOG_TOOL_NAMES.length,
  url: bridge.url,
}));
"""
    )
    out = json.loads(run([tool("node"), "main.mjs"], project))
    assert out == {
        "bridge": "function",
        "protocol": 1,
        "tools": ["echo"],
        "catalog": True,
        "url": "ws://127.0.0.1:9/ws/agent/s",
    }


def test_its_types_resolve_in_a_typescript_consumer(tmp_path: Path) -> None:
    project = install_packed(tmp_path)
    (project / "main.ts").write_text(
        """
import { AgentBridge, defineTool, type RunResult } from "agent-bridge-client";

const bridge = new AgentBridge("ws://127.0.0.1:9", { sessionId: "s", autoConnect: false });
bridge.registerTool(defineTool({
  name: "add",
  parameters: {
    type: "object",
    properties: { a: { type: "number" }, b: { type: "number" } },
    required: ["a", "b"],
  },
  handler: ({ a, b }) => a + b,
}));
export const result: Promise<RunResult> = bridge.send("hi");
"""
    )
    (project / "tsconfig.json").write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "strict": True,
                    "noEmit": True,
                    "lib": ["ES2022", "DOM"],
                    "types": [],
                    "skipLibCheck": False,
                },
                "files": ["main.ts"],
            }
        )
    )
    tsc = JS_DIR / "node_modules" / "typescript" / "bin" / "tsc"
    assert tsc.is_file(), "run `npm ci` in clients/js"
    run([tool("node"), str(tsc), "-p", "tsconfig.json"], project)
