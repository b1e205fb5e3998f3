// Typed tools at run time: registerTool and defineTool refuse at once what the server would,
// and every event the app sees is camelCase.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { AgentBridge, CATALOG, checkTool, defineTool } from "../dist/index.js";
import { LIMITS, fakeSockets, resumableReady } from "./fake-socket.js";

function bridge() {
  const fake = fakeSockets();
  const b = new AgentBridge("ws://127.0.0.1:9", { sessionId: "s", WebSocket: fake.FakeSocket, autoConnect: false, storage: null, page: null });
  return { bridge: b, fake };
}

const handler = () => null;

describe("registerTool checks locally and throws at once", () => {
  for (const name of ["bad tool", "", "x".repeat(65), "naïve", "a.b", 7]) {
    it(`refuses the name ${JSON.stringify(name)}`, () => {
      assert.throws(() => bridge().bridge.registerTool({ name, handler }), TypeError);
    });
  }

  it("accepts letters, digits, _ and - up to 64", () => {
    const { bridge: b } = bridge();
    b.registerTool({ name: "A-z_0".padEnd(64, "x"), handler });
    assert.equal(b.toolNames.length, 1);
  });

  for (const [what, parameters] of [
    ["a schema without type object at the top", { type: "array", items: {} }],
    ["a schema with no type", { properties: {} }],
    ["properties that are not an object", { type: "object", properties: [] }],
    ["required that is not a list of names", { type: "object", required: "x" }],
    ["not an object at all", "string"],
  ]) {
    it(`refuses ${what}`, () => {
      assert.throws(() => bridge().bridge.registerTool({ name: "t", parameters, handler }), /parameters/);
    });
  }

  it("refuses a missing handler, readOnly with destructive, a bad timeout", () => {
    const { bridge: b } = bridge();
    assert.throws(() => b.registerTool({ name: "t" }), /no handler/);
    assert.throws(() => b.registerTool({ name: "t", readOnly: true, destructive: true, handler }), /readOnly and destructive/);
    assert.throws(() => b.registerTool({ name: "t", timeoutMs: -1, handler }), /timeoutMs/);
    assert.deepEqual(b.toolNames, []);
  });

  it("registers nothing of a batch with one bad tool", () => {
    const { bridge: b } = bridge();
    assert.throws(() => b.registerTools([{ name: "good", handler }, { name: "bad name", handler }]));
    assert.deepEqual(b.toolNames, []);
  });

  it("defineTool checks too, and returns the tool as it was given", () => {
    const tool = { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } }, handler };
    assert.equal(defineTool(tool), tool);
    assert.throws(() => defineTool({ ...tool, name: "no spaces allowed" }), TypeError);
    // The catalog's own definitions pass the same checks.
    for (const definition of Object.values(CATALOG)) checkTool({ name: definition.name, parameters: definition.parameters, handler });
  });
});

describe("one casing", () => {
  it("the events and state the app reads are camelCase", () => {
    const { bridge: b, fake } = bridge();
    const seen = {};
    for (const type of ["ready", "runStart", "toolResult", "runComplete", "error", "stepRetry"]) b.on(type, (e) => (seen[type] = e));
    b.connect();
    const socket = fake.last();
    socket.open();
    socket.deliver(resumableReady([]));
    socket.deliver({ type: "run_started", seq: 1, run_id: "r1", content: "x" });
    socket.deliver({ type: "step_retry", seq: 2, run_id: "r1", step: 1, attempt: 1, reason: "model_timeout" });
    socket.deliver({ type: "tool_result", seq: 3, id: "c", run_id: "r1", name: "n", status: "ok", source: "server", result: { some_key: 1 } });
    socket.deliver({ type: "error", seq: 4, code: "no_active_run", message: "m", run_id: "r1" });
    socket.deliver({ type: "complete", seq: 5, run_id: "r1", reason: "done", steps: 1, usage: { total_tokens: 3 } });
    // Own names, hidden ones included: no snake_case copy of a field may ride along unseen.
    const keys = (value) => (value && typeof value === "object" && !Array.isArray(value) ? Object.getOwnPropertyNames(value) : []);
    const snake = [];
    const walk = (value, path, data) => {
      for (const key of keys(value)) {
        if (data.includes(key)) continue; // a tool's own result is its data, not protocol
        if (key.includes("_")) snake.push(`${path}.${key}`);
        walk(value[key], `${path}.${key}`, data);
      }
    };
    for (const [type, event] of Object.entries(seen)) walk(event, type, ["result"]);
    walk(b.limits, "limits", []);
    assert.deepEqual(snake, []);
    assert.deepEqual(seen.toolResult.result, { some_key: 1 }, "data passes untouched");
    assert.equal(seen.ready.sessionId, "s1");
    assert.equal(seen.ready.limits.heartbeatIntervalMs, LIMITS.heartbeat_interval_ms);
    assert.equal(b.limits.maxSteps, LIMITS.max_steps);
    assert.deepEqual(seen.runComplete.usage, { totalTokens: 3 });
    assert.deepEqual(seen.error, { code: "no_active_run", message: "m", id: null, runId: "r1" });
    // The resume token is the client's: no listener gets it.
    assert.equal(seen.ready.resume_token, undefined);
  });
});
