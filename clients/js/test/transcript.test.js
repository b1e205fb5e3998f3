// The transcript model: `messages` kept current from the wire events, voided on step_retry,
// rebuilt from a snapshot; `send()` resolves with the run's result across drops.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { AgentBridge, BridgeError } from "../dist/index.js";
import { fakeSockets, resumableReady, settle } from "./fake-socket.js";

let seq = 0;
const next = () => (seq += 1);

function connected(tools = []) {
  seq = 0;
  const fake = fakeSockets();
  const bridge = new AgentBridge("ws://127.0.0.1:9/", {
    sessionId: "s1",
    WebSocket: fake.FakeSocket,
    autoConnect: false,
    random: () => 0,
    storage: null,
    page: null,
  });
  for (const tool of tools) bridge.registerTool(tool);
  const changes = [];
  bridge.on("change", (e) => changes.push(e.messages));
  bridge.connect();
  fake.last().open();
  fake.last().deliver(resumableReady(tools.map((t) => t.name)));
  return { bridge, fake, socket: () => fake.last(), changes };
}

const echo = { name: "echo", readOnly: true, parameters: { type: "object", properties: { text: { type: "string" } } }, handler: ({ text }) => ({ text }) };

describe("messages", () => {
  it("follows a run from the user's message through text and tool calls to its end", async () => {
    const env = connected([echo]);
    const result = env.bridge.send("say hi");
    assert.deepEqual(env.bridge.messages.map((t) => [t.role, t.status]), [["user", "queued"]]);
    const s = env.socket();
    s.deliver({ type: "run_started", seq: next(), run_id: "r1", content: "say hi" });
    s.deliver({ type: "token", seq: next(), run_id: "r1", content: "Let me " });
    s.deliver({ type: "token", seq: next(), run_id: "r1", content: "check." });
    s.deliver({ type: "tool_request", seq: next(), id: "c1", run_id: "r1", name: "echo", arguments: { text: "hi" }, timeout_ms: 5000 });
    assert.equal(env.bridge.messages[1].parts[1].status, "running");
    await settle();
    s.deliver({ type: "tool_result", seq: next(), id: "c1", run_id: "r1", name: "echo", status: "ok", source: "client", result: { text: "hi" } });
    s.deliver({ type: "tool_result", seq: next(), id: "c2", run_id: "r1", name: "clock", status: "error", source: "server", error: "no clock" });
    s.deliver({ type: "token", seq: next(), run_id: "r1", content: "Done." });
    s.deliver({ type: "complete", seq: next(), run_id: "r1", reason: "done", steps: 2, usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } });

    const [user, assistant] = env.bridge.messages;
    assert.deepEqual({ ...user }, { role: "user", id: user.id, text: "say hi", runId: "r1", status: "started" });
    assert.equal(assistant.role, "assistant");
    assert.equal(assistant.status, "complete");
    assert.equal(assistant.reason, "done");
    assert.equal(assistant.text, "Let me check.Done.");
    assert.deepEqual(assistant.parts.map((p) => (p.type === "text" ? p.text : `${p.name}:${p.status}:${p.source}`)), [
      "Let me check.",
      "echo:ok:client",
      "clock:error:server",
      "Done.",
    ]);
    assert.deepEqual(assistant.parts[1].arguments, { text: "hi" });
    assert.deepEqual(assistant.parts[1].result, { text: "hi" });
    assert.equal(assistant.parts[2].error, "no clock");

    const done = await result;
    assert.equal(done.runId, "r1");
    assert.equal(done.text, "Let me check.Done.");
    assert.equal(done.reason, "done");
    assert.deepEqual(done.usage, { promptTokens: 10, completionTokens: 5, totalTokens: 15 });
    assert.deepEqual(done.toolResults.map((r) => [r.id, r.name, r.status, r.source]), [
      ["c1", "echo", "ok", "client"],
      ["c2", "clock", "error", "server"],
    ]);
  });

  it("puts a run's answer right after its message, ahead of messages queued behind it", () => {
    const env = connected();
    env.bridge.send("first");
    env.bridge.send("second");
    env.socket().deliver({ type: "run_started", seq: next(), run_id: "r1", content: "first" });
    assert.deepEqual(env.bridge.messages.map((t) => `${t.role}:${t.status}`), ["user:started", "assistant:streaming", "user:queued"]);
  });

  it("shows runs started elsewhere (another client of the session) with their message", () => {
    const env = connected();
    env.socket().deliver({ type: "run_started", seq: next(), run_id: "r9", content: "from elsewhere" });
    env.socket().deliver({ type: "token", seq: next(), run_id: "r9", content: "ok" });
    assert.deepEqual(env.bridge.messages.map((t) => [t.role, t.role === "user" ? t.text : t.text]), [["user", "from elsewhere"], ["assistant", "ok"]]);
  });

  it("voids the text of a step made again, and keeps what came before its tool calls", async () => {
    const env = connected();
    const result = env.bridge.send("go");
    const s = env.socket();
    s.deliver({ type: "run_started", seq: next(), run_id: "r1", content: "go" });
    s.deliver({ type: "token", seq: next(), run_id: "r1", content: "Step one. " });
    s.deliver({ type: "tool_result", seq: next(), id: "c1", run_id: "r1", name: "clock", status: "ok", source: "server", result: 1 });
    s.deliver({ type: "token", seq: next(), run_id: "r1", content: "half a sen" });
    s.deliver({ type: "step_retry", seq: next(), run_id: "r1", step: 2, attempt: 1, reason: "model_connection" });
    let turn = env.bridge.messages[1];
    assert.equal(turn.text, "Step one. ");
    assert.deepEqual(turn.retry, { step: 2, attempt: 1, reason: "model_connection" });
    s.deliver({ type: "token", seq: next(), run_id: "r1", content: "A whole sentence." });
    turn = env.bridge.messages[1];
    assert.equal(turn.retry, null);
    assert.equal(turn.text, "Step one. A whole sentence.");
    s.deliver({ type: "complete", seq: next(), run_id: "r1", reason: "done", steps: 2 });
    assert.equal((await result).text, "Step one. A whole sentence.");
  });

  it("makes new objects only for what changed, and says so with a change event", () => {
    const env = connected();
    env.bridge.send("a");
    const s = env.socket();
    s.deliver({ type: "run_started", seq: next(), run_id: "r1", content: "a" });
    const before = env.bridge.messages;
    assert.equal(env.bridge.messages, before, "unchanged: the same array");
    s.deliver({ type: "token", seq: next(), run_id: "r1", content: "x" });
    const after = env.bridge.messages;
    assert.notEqual(after, before);
    assert.equal(after[0], before[0], "the user turn did not change");
    assert.notEqual(after[1], before[1]);
    assert.equal(env.changes.at(-1), after);
    assert.ok(Object.isFrozen(after) && Object.isFrozen(after[1]));
  });

  it("carries a call's progress, cancel reason and approval on its part", async () => {
    let progress;
    const slow = { name: "slow", handler: (_args, ctx) => new Promise((resolve) => { ctx.reportProgress(0.5, "half"); progress = resolve; }) };
    const env = connected([slow]);
    const s = env.socket();
    s.deliver({ type: "run_started", seq: next(), run_id: "r1", content: "x" });
    s.deliver({ type: "approval_request", seq: next(), id: "a1", run_id: "r1", name: "slow", arguments: { n: 1 }, reason: "destructive", expires_at: Date.now() + 60_000 });
    let part = env.bridge.messages[1].parts[0];
    assert.equal(part.status, "awaiting_approval");
    assert.equal(part.approvalState, "open");
    assert.equal(part.approval.id, "a1");
    s.deliver({ type: "tool_request", seq: next(), id: "a1", run_id: "r1", name: "slow", arguments: { n: 1 }, timeout_ms: 5000 });
    await settle();
    part = env.bridge.messages[1].parts[0];
    assert.equal(part.status, "running");
    assert.equal(part.approvalState, "approved");
    assert.deepEqual(part.progress, { value: 0.5, message: "half" });
    s.deliver({ type: "tool_cancel", seq: next(), id: "a1", reason: "by_user" });
    s.deliver({ type: "tool_result", seq: next(), id: "a1", run_id: "r1", name: "slow", status: "cancelled", source: "client", error: "cancelled by the user" });
    part = env.bridge.messages[1].parts[0];
    assert.equal(part.cancelReason, "by_user");
    assert.equal(part.status, "cancelled");
    assert.equal(part.error, "cancelled by the user");
    progress?.();
  });
});

describe("a snapshot", () => {
  it("rebuilds the conversation: turns, calls still pending or asking, the run in progress", () => {
    const env = connected();
    const s = env.socket();
    s.deliver({ type: "approval_request", seq: next(), id: "c3", run_id: "r2", name: "navigate", arguments: { url: "https://a.example/" }, reason: "destructive", expires_at: Date.now() + 60_000 });
    s.deliver({
      type: "snapshot",
      last_seq: 40,
      turns: [
        { role: "user", content: "one", run_id: "r1" },
        { role: "assistant", content: "Reading.", run_id: "r1", tool_calls: [{ id: "c1", name: "read_page", arguments: {}, status: "ok", result: { title: "T" } }] },
        { role: "assistant", content: "It is T.", run_id: "r1", tool_calls: [] },
        { role: "user", content: "two", run_id: "r2" },
        { role: "assistant", content: "", run_id: "r2", tool_calls: [{ id: "c2", name: "echo", arguments: { text: "x" }, status: "pending" }, { id: "c3", name: "navigate", arguments: { url: "https://a.example/" }, status: "pending" }] },
      ],
      run: { run_id: "r2", content: "Going" },
      pending_calls: ["c2", "c3"],
      pending_approvals: ["c3"],
    });
    const messages = env.bridge.messages;
    assert.deepEqual(messages.map((t) => `${t.role}:${t.runId}:${t.status}`), [
      "user:r1:started",
      "assistant:r1:complete",
      "user:r2:started",
      "assistant:r2:streaming",
    ]);
    assert.equal(messages[1].text, "Reading.It is T.");
    assert.equal(messages[1].reason, null);
    assert.deepEqual(messages[3].parts.map((p) => (p.type === "text" ? p.text : `${p.id}:${p.status}`)), ["c2:pending", "c3:awaiting_approval", "Going"]);
    assert.equal(messages[3].parts[1].approval.id, "c3");
    // Live traffic carries on from there.
    s.deliver({ type: "token", seq: 41, run_id: "r2", content: " on" });
    assert.equal(env.bridge.messages[3].text, "Going on");
  });

  it("after a page reload rebuilds from the snapshot alone", () => {
    const env = connected();
    env.socket().deliver({ type: "snapshot", last_seq: 3, turns: [{ role: "user", content: "hi", run_id: "r1" }, { role: "assistant", content: "Hello", run_id: "r1" }] });
    assert.deepEqual(env.bridge.messages.map((t) => t.text), ["hi", "Hello"]);
  });
});

describe("send()", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("resolves once its run completes, across a dropped connection and a replay", async () => {
    const env = connected();
    const result = env.bridge.send("go");
    env.socket().deliver({ type: "run_started", seq: next(), run_id: "r1", content: "go" });
    env.socket().deliver({ type: "token", seq: next(), run_id: "r1", content: "a" });
    env.socket().drop(1006);
    mock.timers.tick(0);
    const again = env.fake.last();
    again.open();
    again.deliver(resumableReady([], { resumed: { from_seq: 3 } }));
    again.deliver({ type: "token", seq: next(), run_id: "r1", content: "b" });
    again.deliver({ type: "complete", seq: next(), run_id: "r1", reason: "done", steps: 1 });
    const done = await result;
    assert.deepEqual([done.runId, done.text, done.reason], ["r1", "ab", "done"]);
  });

  it("resolves `unknown` when the run ended while the page was away past the replay window", async () => {
    const env = connected();
    const result = env.bridge.send("go");
    env.socket().deliver({ type: "run_started", seq: next(), run_id: "r1", content: "go" });
    env.socket().drop(1006);
    mock.timers.tick(0);
    const again = env.fake.last();
    again.open();
    again.deliver(resumableReady([], { resumed: { from_seq: 2, gap: true } }));
    again.deliver({ type: "snapshot", last_seq: 90, turns: [{ role: "user", content: "go", run_id: "r1" }, { role: "assistant", content: "All done.", run_id: "r1" }] });
    const done = await result;
    assert.deepEqual([done.runId, done.text, done.reason], ["r1", "All done.", "unknown"]);
  });

  it("resolves a message sent while disconnected once it has run", async () => {
    const env = connected();
    env.socket().drop(1006);
    const result = env.bridge.send("later");
    mock.timers.tick(0);
    const again = env.fake.last();
    again.open();
    again.deliver(resumableReady([], { resumed: { from_seq: 1 } }));
    assert.deepEqual(again.sentOfType("message"), [{ type: "message", content: "later" }]);
    again.deliver({ type: "run_started", seq: next(), run_id: "r7", content: "later" });
    again.deliver({ type: "complete", seq: next(), run_id: "r7", reason: "done", steps: 1 });
    assert.equal((await result).runId, "r7");
  });
});

describe("stop()", () => {
  it("returns false with no run, and sends nothing", () => {
    const env = connected();
    assert.equal(env.bridge.stop(), false);
    assert.deepEqual(env.socket().sentOfType("stop"), []);
  });

  it("stops a run the server has not announced yet, and drops the messages queued behind it", async () => {
    const env = connected();
    const first = env.bridge.send("one");
    const second = env.bridge.send("two");
    assert.equal(env.bridge.stop(), true);
    assert.deepEqual(env.socket().sentOfType("stop"), [{ type: "stop" }]);
    await assert.rejects(second, (error) => error instanceof BridgeError && error.code === "client_stopped");
    assert.equal(env.bridge.messages[1].status, "dropped");
    env.socket().deliver({ type: "run_started", seq: next(), run_id: "r1", content: "one" });
    env.socket().deliver({ type: "complete", seq: next(), run_id: "r1", reason: "stopped", steps: 0 });
    assert.equal((await first).reason, "stopped");
  });

  it("rejects a message the server's queue refused", async () => {
    const env = connected();
    env.socket().deliver({ type: "run_started", seq: next(), run_id: "r1", content: "elsewhere" });
    const refused = env.bridge.send("too many");
    env.socket().deliver({ type: "error", seq: next(), code: "queue_full", message: "the queue is full" });
    await assert.rejects(refused, (error) => error.code === "queue_full");
  });
});

describe("a reset", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("says the conversation is gone, empties it, and ends the run it waited for", async () => {
    const env = connected();
    const resets = [];
    env.bridge.on("reset", (e) => resets.push(e.code));
    const result = env.bridge.send("go");
    env.socket().deliver({ type: "run_started", seq: next(), run_id: "r1", content: "go" });
    env.socket().drop(1012, "server restart");
    mock.timers.tick(0);
    const again = env.fake.last();
    again.open();
    again.deliver({ type: "error", code: "session_expired", message: "no such session" });
    again.deliver(resumableReady([], { token: "tok-2" }));
    assert.deepEqual(resets, ["session_expired"]);
    assert.deepEqual(env.bridge.messages, []);
    assert.equal((await result).reason, "disconnected");
  });
});
