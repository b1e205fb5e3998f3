// dist/ is committed so the demo and plain <script type="module"> pages work without a build;
// these tests fail when it, or a generated source, no longer matches what the build makes.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
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
  assert.equal(pkg.type, "module");
  assert.deepEqual(Object.keys(pkg.dependencies ?? {}), []);
  const entry = pkg.exports["."];
  for (const path of [pkg.types, entry.types, entry.import, entry.default]) {
    readFileSync(join(root, path));
  }
});
