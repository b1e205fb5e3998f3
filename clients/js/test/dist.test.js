// dist/ is committed so the demo and plain <script type="module"> pages work without a build;
// these tests fail when it, or a generated source, no longer matches what the build makes.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

it("src/catalog.ts matches tools/*.json", () => {
  const generated = execFileSync(process.execPath, [join(root, "scripts", "gen-catalog.mjs")], { encoding: "utf8" });
  assert.equal(readFileSync(join(root, "src", "catalog.ts"), "utf8"), generated, "run `npm run build` in clients/js");
});

it("dist/ is what the TypeScript build makes from src/", () => {
  const out = mkdtempSync(join(tmpdir(), "agent-bridge-dist-"));
  try {
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.json"), "--outDir", out], { stdio: "pipe" });
    const built = readdirSync(out).sort();
    assert.deepEqual(readdirSync(join(root, "dist")).sort(), built, "run `npm run build` in clients/js");
    for (const file of built) {
      assert.equal(
        readFileSync(join(root, "dist", file), "utf8"),
        readFileSync(join(out, file), "utf8"),
        `dist/${file} is stale: run \`npm run build\` in clients/js`,
      );
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

it("package.json points bundlers and TypeScript at files that exist", () => {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  assert.equal(pkg.name, "agent-bridge-client");
  assert.equal(pkg.type, "module");
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
  const entry = pkg.exports["."];
  for (const path of [pkg.types, entry.types, entry.import, entry.default]) {
    readFileSync(join(root, path));
  }
});

const CONSUMER_TS = `
import { AgentBridge, BridgeError, registerBrowserTools, ToolDenied, type ApprovalRequest, type ServerMessage, type ToolContext } from "agent-bridge-client";

const bridge = new AgentBridge("ws://127.0.0.1:9", { sessionId: "s", autoConnect: false });
bridge.registerTool<{ city: string }, { temp: number }>({
  name: "weather",
  handler: async ({ city }, context: ToolContext) => {
    context.signal.throwIfAborted();
    if (city === "") throw new ToolDenied();
    return { temp: city.length };
  },
});
bridge.on("token", (event) => {
  const text: string = event.content;
  void text;
});
bridge.on("runComplete", (event) => {
  const reason: "done" | "stopped" | "max_steps" | "tool_budget" | "error" | "disconnected" = event.reason;
  void reason;
});
bridge.on("approvalRequest", (approval: ApprovalRequest) => {
  const edited: Record<string, unknown> = { ...approval.arguments };
  approval.approve({ arguments: edited, remember: "session" }).catch((error: unknown) => {
    if (error instanceof BridgeError && error.code === "invalid_arguments") void approval.deny("bad edit");
  });
});
void bridge.cancelCall("call_1");
bridge.registerTool({ name: "fetch_page", readOnly: true, untrustedContent: true, handler: () => null });
registerBrowserTools(bridge, { only: ["read_page", "confirm"] });
// @ts-expect-error: remember is "session" or nothing
void bridge.pendingApprovals[0]?.approve({ remember: "forever" });
// @ts-expect-error: events are typed, not strings
bridge.on("no_such_event", () => undefined);
// @ts-expect-error: the catalog's names are typed too
registerBrowserTools(bridge, { only: ["no_such_tool"] });
export function kind(message: ServerMessage): string {
  return message.type === "tool_request" ? message.name : message.type;
}
`;

it("is usable as a package: exports resolve in Node and its types in a TypeScript consumer", () => {
  const dir = mkdtempSync(join(tmpdir(), "agent-bridge-consumer-"));
  try {
    mkdirSync(join(dir, "node_modules"), { recursive: true });
    symlinkSync(root, join(dir, "node_modules", "agent-bridge-client"), "dir");
    writeFileSync(join(dir, "consumer.ts"), CONSUMER_TS);
    writeFileSync(
      join(dir, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022", module: "ES2022", moduleResolution: "bundler", strict: true,
          noEmit: true, lib: ["ES2022", "DOM"], types: [], skipLibCheck: false,
        },
        files: ["consumer.ts"],
      }),
    );
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    execFileSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.json")], { stdio: "pipe" });
    writeFileSync(
      join(dir, "consumer.mjs"),
      'import { AgentBridge, browserTools, CATALOG_TOOL_NAMES } from "agent-bridge-client";\n' +
        'console.log(typeof AgentBridge, browserTools().length === CATALOG_TOOL_NAMES.length);\n',
    );
    const out = execFileSync(process.execPath, [join(dir, "consumer.mjs")], { encoding: "utf8", cwd: dir });
    assert.equal(out.trim(), "function true");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
