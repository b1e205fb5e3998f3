// Approvals, per-call cancel and the hints: a person's answer reaches the server once and its
// fate reaches the caller, a question is shown once per call id (across reconnects and reloads),
// and a cancelled handler learns why.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { AgentBridge, BridgeError, ToolCancelled } from "../dist/index.js";
import { FakeStorage, fakeSockets, resumableReady, settle } from "./fake-socket.js";

let seq = 0;

function env(tools = [], options = {}) {
  const fake = options.fake ?? fakeSockets();
  const bridge = new AgentBridge("ws://127.0.0.1:9/", {
    sessionId: "s1",
    WebSocket: fake.FakeSocket,
    autoConnect: false,
    random: () => 0,
    storage: null,
    ...options,
  });
  for (const tool of tools) bridge.registerTool(tool);
  const events = [];
  for (const type of ["approvalRequest", "approvalSettled", "resumed", "error", "toolCancel"]) {
    bridge.on(type, (e) => events.push([type, e]));
  }
  return { bridge, fake, of: (type) => events.filter(([t]) => t === type).map(([, e]) => e) };
}

function connected(tools = [], options = {}) {
  seq = 0;
  const e = env(tools, options);
  e.bridge.connect();
  e.fake.last().open();
  e.fake.last().deliver(resumableReady(tools.map((t) => t.name)));
  return e;
}

function asking(id, extra = {}) {
  seq += 1;
  return {
    type: "approval_request",
    seq,
    id,
    run_id: "r1",
    name: "delete_file",
    arguments: { path: "/tmp/a" },
    reason: "this tool needs your approval",
    expires_at: 1_900_000_000_000,
    ...extra,
  };
}

function next(message) {
  seq += 1;
  return { seq, ...message };
}

/** The server takes whatever is in flight: it answers the pings sent behind each request. */
function pongAll(socket, from = 0) {
  for (const ping of socket.sentOfType("ping").slice(from)) socket.deliver(next({ type: "pong", nonce: ping.nonce }));
}

const answers = (socket) => socket.sentOfType("approval_response");

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
afterEach(() => mock.timers.reset());

describe("approval requests", () => {
  it("surfaces the request with its fields, and approve() resolves once the server took it", async () => {
    const { bridge, fake, of } = connected();
    const socket = fake.last();
    socket.deliver(asking("c1"));
    const [approval] = of("approvalRequest");
    assert.equal(approval.id, "c1");
    assert.equal(approval.runId, "r1");
    assert.equal(approval.name, "delete_file");
    assert.deepEqual(approval.arguments, { path: "/tmp/a" });
    assert.equal(approval.reason, "this tool needs your approval");
    assert.equal(approval.expiresAt, 1_900_000_000_000);
    assert.equal(approval.redelivered, false);
    assert.equal(approval.state, "open");
    assert.deepEqual(bridge.pendingApprovals.map((a) => a.id), ["c1"]);

    let done = false;
    const answered = approval.approve().then(() => (done = true));
    assert.equal(approval.state, "answering");
    assert.deepEqual(answers(socket), [{ type: "approval_response", id: "c1", decision: "approve" }]);
    await settle();
    assert.equal(done, false, "not before the server answered");
    pongAll(socket);
    await answered;
    assert.equal(approval.state, "approved");
    assert.equal(approval.signal.aborted, false, "answered here, so nothing to abort");
    assert.deepEqual(of("approvalSettled"), [{ id: "c1", outcome: "approved" }]);
    assert.deepEqual(bridge.pendingApprovals, []);
    await assert.rejects(approval.deny(), (error) => error instanceof BridgeError && error.code === "unknown_approval");
    assert.equal(answers(socket).length, 1, "a second answer is never sent");
  });

  it("sends a denial with its reason, and edited arguments with remember", async () => {
    const { fake, of } = connected();
    const socket = fake.last();
    socket.deliver(asking("c1"));
    socket.deliver(asking("c2"));
    const [first, second] = of("approvalRequest");
    const denied = first.deny("not that file");
    const approved = second.approve({ arguments: { path: "/tmp/b" }, remember: "session" });
    assert.deepEqual(answers(socket), [
      { type: "approval_response", id: "c1", decision: "deny", reason: "not that file" },
      { type: "approval_response", id: "c2", decision: "approve", arguments: { path: "/tmp/b" }, remember: "session" },
    ]);
    pongAll(socket);
    await Promise.all([denied, approved]);
    assert.deepEqual(of("approvalSettled"), [
      { id: "c1", outcome: "denied" },
      { id: "c2", outcome: "approved" },
    ]);
  });

  it("rejects an edit the server refuses with invalid_arguments and leaves the question open", async () => {
    const { fake, of } = connected();
    const socket = fake.last();
    socket.deliver(asking("c1"));
    const [approval] = of("approvalRequest");
    const first = approval.approve({ arguments: { path: 42 } });
    socket.deliver(next({ type: "error", code: "invalid_arguments", message: "at '/path': 42 is not of type 'string'", id: "c1" }));
    pongAll(socket);
    await assert.rejects(first, (error) => {
      assert.ok(error instanceof BridgeError);
      assert.equal(error.code, "invalid_arguments");
      assert.equal(error.id, "c1");
      assert.match(error.message, /not of type 'string'/);
      return true;
    });
    assert.equal(approval.state, "open");
    assert.deepEqual(of("approvalSettled"), []);
    // Still the general error event too, for apps that log everything.
    assert.equal(of("error")[0].code, "invalid_arguments");

    const second = approval.approve({ arguments: { path: "/tmp/c" } });
    pongAll(socket, 1);
    await second;
    assert.equal(approval.state, "approved");
    assert.deepEqual(answers(socket).map((a) => a.arguments), [{ path: 42 }, { path: "/tmp/c" }]);
  });

  it("rejects with unknown_approval when the question was over, and closes it", async () => {
    const { fake, of } = connected();
    const socket = fake.last();
    socket.deliver(asking("c1"));
    const [approval] = of("approvalRequest");
    const answer = approval.approve();
    socket.deliver(next({ type: "error", code: "unknown_approval", message: "no open approval request with id 'c1'", id: "c1" }));
    await assert.rejects(answer, (error) => error.code === "unknown_approval" && error.id === "c1");
    assert.equal(approval.state, "closed");
    assert.deepEqual(of("approvalSettled"), [{ id: "c1", outcome: "closed" }]);
    // Its pong comes later and changes nothing.
    pongAll(socket);
    await settle();
  });

  it("ends an unanswered question from its tool_result, aborting its signal", () => {
    const { fake, of } = connected();
    const socket = fake.last();
    socket.deliver(asking("c1"));
    socket.deliver(asking("c2"));
    socket.deliver(asking("c3"));
    const [expired, cancelled, elsewhere] = of("approvalRequest");
    socket.deliver(next({ type: "tool_result", id: "c1", run_id: "r1", name: "delete_file", status: "approval_expired", error: "nobody answered" }));
    socket.deliver(next({ type: "tool_result", id: "c2", run_id: "r1", name: "delete_file", status: "cancelled", error: "stopped" }));
    // A request for the call means it was let through.
    socket.deliver(next({ type: "tool_request", id: "c3", run_id: "r1", name: "delete_file", arguments: {}, timeout_ms: 5000 }));
    assert.deepEqual(of("approvalSettled"), [
      { id: "c1", outcome: "expired" },
      { id: "c2", outcome: "cancelled" },
      { id: "c3", outcome: "approved" },
    ]);
    assert.equal(expired.state, "expired");
    assert.equal(expired.signal.aborted, true);
    assert.equal(cancelled.signal.aborted, true);
    assert.equal(elsewhere.state, "approved");
  });

  it("shows a question asked again on the same connection or after a reconnect only once", async () => {
    const e = connected();
    const socket = e.fake.last();
    socket.deliver(asking("c1"));
    socket.deliver(asking("c1", { redelivered: true }));
    socket.drop(1006);
    mock.timers.tick(0);
    const again = e.fake.last();
    again.open();
    again.deliver(resumableReady([], { resumed: { from_seq: seq + 1, pending_approvals: ["c1"] } }));
    again.deliver(asking("c1", { redelivered: true }));
    assert.equal(e.of("approvalRequest").length, 1);
    assert.deepEqual(e.of("resumed")[0].pendingApprovals, ["c1"]);
    // The object from before the drop still answers, on the new connection.
    const answer = e.of("approvalRequest")[0].approve();
    assert.equal(answers(again).length, 1);
    pongAll(again);
    await answer;
  });

  it("sends an answer given while disconnected once the session is back, if still open", async () => {
    const e = connected();
    const socket = e.fake.last();
    socket.deliver(asking("c1"));
    socket.deliver(asking("c2"));
    socket.drop(1006);
    const [kept, gone] = e.of("approvalRequest");
    const keptAnswer = kept.approve();
    const goneAnswer = gone.deny("no");
    mock.timers.tick(0);
    const again = e.fake.last();
    again.open();
    assert.deepEqual(answers(again), [], "nothing before ready");
    again.deliver(resumableReady([], { resumed: { from_seq: seq + 1, pending_approvals: ["c1"] } }));
    assert.deepEqual(answers(again).map((a) => a.id), ["c1"]);
    await assert.rejects(goneAnswer, (error) => error.code === "unknown_approval");
    assert.equal(gone.state, "closed");
    assert.equal(gone.signal.aborted, true);
    pongAll(again);
    await keptAnswer;
  });

  it("sends again an answer the dropped connection may have lost", async () => {
    const e = connected();
    const socket = e.fake.last();
    socket.deliver(asking("c1"));
    const answer = e.of("approvalRequest")[0].approve({ remember: "session" });
    assert.equal(answers(socket).length, 1);
    socket.drop(1006);
    mock.timers.tick(0);
    const again = e.fake.last();
    again.open();
    again.deliver(resumableReady([], { resumed: { from_seq: seq + 1, pending_approvals: ["c1"] } }));
    assert.deepEqual(answers(again), [{ type: "approval_response", id: "c1", decision: "approve", remember: "session" }]);
    pongAll(again);
    await answer;
  });

  it("after a page reload shows each question still open exactly once", async () => {
    const storage = new FakeStorage();
    const before = connected([], { storage });
    before.fake.last().deliver(asking("c1"));
    assert.equal(before.of("approvalRequest").length, 1);

    // The new page: same storage, nothing in memory.
    const after = env([], { storage });
    after.bridge.connect();
    const socket = after.fake.last();
    socket.open();
    assert.deepEqual(socket.sentOfType("hello")[0].resume, { token: "tok-1", last_seq: 0 });
    socket.deliver(resumableReady([], { resumed: { from_seq: 2, gap: true, pending_approvals: ["c1"] } }));
    socket.deliver({ type: "snapshot", last_seq: 1, turns: [], run: { run_id: "r1", content: "" }, pending_calls: [], pending_approvals: ["c1"] });
    socket.deliver({ ...asking("c1", { redelivered: true }), seq: 2 });
    // A later reconnect asks again; the page already shows it.
    socket.drop(1006);
    mock.timers.tick(0);
    const third = after.fake.last();
    third.open();
    third.deliver(resumableReady([], { resumed: { from_seq: 3, pending_approvals: ["c1"] } }));
    third.deliver({ ...asking("c1", { redelivered: true }), seq: 3 });
    const shown = after.of("approvalRequest");
    assert.equal(shown.length, 1);
    assert.equal(shown[0].redelivered, true);
    const answer = shown[0].approve();
    assert.equal(answers(third).length, 1);
    pongAll(third);
    await answer;
  });

  it("closes questions that ended while the link was down", () => {
    const e = connected();
    e.fake.last().deliver(asking("c1"));
    e.fake.last().drop(1006);
    mock.timers.tick(0);
    const again = e.fake.last();
    again.open();
    again.deliver(resumableReady([], { resumed: { from_seq: seq + 1, pending_approvals: [] } }));
    const [approval] = e.of("approvalRequest");
    assert.equal(approval.state, "closed");
    assert.equal(approval.signal.aborted, true);
    assert.deepEqual(e.of("approvalSettled"), [{ id: "c1", outcome: "closed" }]);
    // A stray replay of the old request is not shown again.
    again.deliver(asking("c1"));
    assert.equal(e.of("approvalRequest").length, 1);
  });

  it("rejects an answer when the client is closed for good", async () => {
    const e = connected();
    e.fake.last().deliver(asking("c1"));
    const [approval] = e.of("approvalRequest");
    const answer = approval.approve();
    e.bridge.close();
    await assert.rejects(answer, (error) => error.code === "client_closed");
  });
});

describe("cancelCall", () => {
  it("sends cancel_call, and the handler's signal aborts with by_user when tool_cancel arrives", async () => {
    const seen = {};
    const slow = {
      name: "slow",
      handler: (_args, ctx) =>
        new Promise((resolve) => {
          seen.signal = ctx.signal;
          ctx.signal.addEventListener("abort", () => resolve("too late"));
        }),
    };
    const { bridge, fake, of } = connected([slow]);
    const socket = fake.last();
    socket.deliver(next({ type: "tool_request", id: "c1", run_id: "r1", name: "slow", arguments: {}, timeout_ms: 5000 }));
    await settle();
    const cancelled = bridge.cancelCall("c1");
    assert.deepEqual(socket.sentOfType("cancel_call"), [{ type: "cancel_call", id: "c1" }]);
    socket.deliver(next({ type: "tool_cancel", id: "c1", reason: "by_user" }));
    pongAll(socket);
    await cancelled;
    assert.equal(seen.signal.aborted, true);
    assert.ok(seen.signal.reason instanceof ToolCancelled);
    assert.equal(seen.signal.reason.reason, "by_user");
    assert.equal(seen.signal.reason.name, "AbortError");
    assert.equal(of("toolCancel")[0].reason, "by_user");
    await settle();
    assert.deepEqual(socket.sentOfType("tool_response"), [], "an aborted handler's answer is not sent");
  });

  it("rejects with unknown_call when the server has no such call", async () => {
    const { bridge, fake } = connected();
    const socket = fake.last();
    const cancelled = bridge.cancelCall("nope");
    // The server names no id in this refusal; the order of refusals ties it to the request.
    socket.deliver(next({ type: "error", code: "unknown_call", message: "no call 'nope' is waiting or running" }));
    pongAll(socket);
    await assert.rejects(cancelled, (error) => error instanceof BridgeError && error.code === "unknown_call" && error.id === "nope");
  });

  it("cancels a call waiting for approval too", async () => {
    const { bridge, fake, of } = connected();
    const socket = fake.last();
    socket.deliver(asking("c1"));
    const cancelled = bridge.cancelCall("c1");
    socket.deliver(next({ type: "tool_result", id: "c1", run_id: "r1", name: "delete_file", status: "cancelled", error: "by_user" }));
    pongAll(socket);
    await cancelled;
    assert.deepEqual(of("approvalSettled"), [{ id: "c1", outcome: "cancelled" }]);
  });
});

describe("hints", () => {
  it("puts every hint on the wire, untrustedContent as untrusted_content", () => {
    const fake = fakeSockets();
    const bridge = new AgentBridge("ws://127.0.0.1:9/", { sessionId: "s1", WebSocket: fake.FakeSocket, autoConnect: false, storage: null });
    bridge.registerTool({ name: "fetch_page", readOnly: true, idempotent: true, untrustedContent: true, handler: () => ({}) });
    bridge.registerTool({ name: "delete_file", destructive: true, handler: () => ({}) });
    bridge.connect();
    fake.last().open();
    const [fetchPage, deleteFile] = fake.last().sentOfType("hello")[0].tools;
    assert.equal(fetchPage.read_only, true);
    assert.equal(fetchPage.idempotent, true);
    assert.equal(fetchPage.untrusted_content, true);
    assert.equal(fetchPage.destructive, undefined);
    assert.equal(deleteFile.destructive, true);
    assert.equal(deleteFile.untrusted_content, undefined);
  });

  it("refuses a tool that is both readOnly and destructive", () => {
    const { bridge } = env();
    assert.throws(
      () => bridge.registerTool({ name: "odd", readOnly: true, destructive: true, handler: () => null }),
      /cannot be both readOnly and destructive/,
    );
    assert.deepEqual(bridge.toolNames, []);
  });
});
