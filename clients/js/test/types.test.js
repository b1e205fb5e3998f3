// The type test (test/types/*.test-d.ts) under `tsc --strict`, so `npm test` fails too when a
// schema no longer types its handler, or an `@ts-expect-error` stops being an error.

import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { it } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

it("defineTool types handlers from their schemas, and refuses what the schema does not have", () => {
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "-p", join(root, "test", "types", "tsconfig.json")], { stdio: "pipe" });
});
