import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { AgentBridge, ToolCallError, ToolDenied } from "../dist/index.js";
import { fakeSockets, ready, settle } from "./fake-socket.js";

const echo = {
  name: "echo",
  description: "Echo the text back.",
  parameters: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  outputSchema: { type: "object" },
  timeoutMs: 5000,
  readOnly: true,
  handler: async ({ text }) => ({ text }),
};

// Every server message has its own seq, and the client drops one it has already seen.
let nextSeq = 5;

function connected(options = {}, tools = [echo]) {
  nextSeq = 5;
  const fake = fakeSockets();
  const bridge = new AgentBridge("ws://127.0.0.1:9/", {
    sessionId: "s1",
    WebSocket: fake.FakeSocket,
    autoConnect: false,
    random: () => 0,
    ...options,
  });
  for (const tool of tools) bridge.registerTool(tool);
  const statuses = [];
  bridge.on("status", (e) => statuses.push(e));
  bridge.connect();
  const socket = fake.last();
  socket.open();
  socket.deliver(ready(tools.map((t) => t.name)));
  return { bridge, fake, socket, statuses };
}

function request(id, name = "echo", args = { text: "hi" }, extra = {}) {
  return { type: "tool_request", seq: nextSeq++, id, run_id: "r1", name, arguments: args, timeout_ms: 5000, ...extra };
}

describe("connecting", () => {
  it("builds the URL from the session id and puts the token in the query", () => {
    const fake = fakeSockets();
    const bridge = new AgentBridge("http://127.0.0.1:9", {
      sessionId: "tab-1",
      token: "s3cret",
      WebSocket: fake.FakeSocket,
      autoConnect: false,
    });
    bridge.connect();
    assert.equal(bridge.url, "ws://127.0.0.1:9/ws/agent/tab-1");
    assert.equal(fake.last().url, "ws://127.0.0.1:9/ws/agent/tab-1?token=s3cret");
  });

  it("takes the session id from a full endpoint URL", () => {
    const fake = fakeSockets();
    const bridge = new AgentBridge("wss://h.example/ws/agent/abc", { WebSocket: fake.FakeSocket, autoConnect: false });
    assert.equal(bridge.sessionId, "abc");
    assert.equal(bridge.url, "wss://h.example/ws/agent/abc");
  });

  it("connects by itself after the current task, so tools registered right away go in the hello", async () => {
    const fake = fakeSockets();
    const bridge = new AgentBridge("ws://127.0.0.1:9", { sessionId: "s", WebSocket: fake.FakeSocket });
    bridge.registerTool(echo);
    assert.equal(fake.sockets.length, 0);
    await settle();
    assert.equal(fake.sockets.length, 1);
    fake.last().open();
    assert.deepEqual(fake.last().sentOfType("hello")[0].tools.map((t) => t.name), ["echo"]);
  });

  it("says hello with the protocol version and the tools in wire form", () => {
    const { socket } = connected();
    const [hello] = socket.sent;
    assert.equal(hello.type, "hello");
    assert.equal(hello.protocol, 1);
    assert.equal(hello.client, "agent-bridge-js");
    assert.deepEqual(hello.tools, [
      {
        name: "echo",
        description: "Echo the text back.",
        parameters: echo.parameters,
        output_schema: { type: "object" },
        timeout_ms: 5000,
        read_only: true,
      },
    ]);
  });

  it("is open only once ready arrives, and then sends what was queued", () => {
    const fake = fakeSockets();
    const bridge = new AgentBridge("ws://127.0.0.1:9", { sessionId: "s", WebSocket: fake.FakeSocket, autoConnect: false });
    bridge.connect();
    bridge.send("early");
    const socket = fake.last();
    socket.open();
    assert.equal(bridge.status, "connecting");
    assert.deepEqual(socket.sentOfType("message"), []);
    socket.deliver(ready([]));
    assert.equal(bridge.status, "open");
    assert.deepEqual(socket.sentOfType("message"), [{ type: "message", content: "early" }]);
  });

  it("exposes the server's validation errors for rejected tools", () => {
    const fake = fakeSockets();
    const bridge = new AgentBridge("ws://127.0.0.1:9", { sessionId: "s", WebSocket: fake.FakeSocket, autoConnect: false });
    // A refusal the client cannot foresee (here: the server's schema check), after `ready`.
    bridge.registerTool({ ...echo, name: "deep", parameters: { type: "object", properties: { x: { $ref: "http://x/" } } } });
    const events = [];
    bridge.on("ready", () => events.push("ready"));
    bridge.on("rejected", (r) => events.push(r));
    bridge.connect();
    fake.last().open();
    const rejection = { name: "deep", code: "network_ref", reason: "$ref must be local" };
    fake.last().deliver(ready([], [rejection]));
    assert.deepEqual(bridge.rejectedTools, [rejection]);
    assert.deepEqual(events, ["ready", [rejection]]);
  });

  it("answers the server's ping with a pong carrying the same nonce", () => {
    const { socket } = connected();
    socket.deliver({ type: "ping", seq: 2, nonce: "n-42" });
    assert.deepEqual(socket.sentOfType("pong"), [{ type: "pong", nonce: "n-42" }]);
  });

  it("reports a frame it cannot read as an error and keeps going", () => {
    const { bridge, socket } = connected();
    const errors = [];
    bridge.on("error", (e) => errors.push(e.code));
    socket.deliver("{not json");
    socket.deliver({ type: "error", seq: 3, code: "queue_full", message: "full" });
    assert.deepEqual(errors, ["client_invalid_frame", "queue_full"]);
    assert.equal(bridge.status, "open");
  });
});

describe("runs", () => {
  it("sends messages and stop, and turns the stream into events in order", () => {
    const { bridge, socket } = connected();
    const seen = [];
    for (const type of ["runStart", "token", "toolResult", "runComplete"]) {
      bridge.on(type, (e) => seen.push([type, e.runId]));
    }
    bridge.send("hello there");
    assert.deepEqual(socket.sentOfType("message"), [{ type: "message", content: "hello there" }]);
    socket.deliver({ type: "run_started", seq: 2, run_id: "r1", content: "hello there" });
    assert.equal(bridge.runId, "r1");
    socket.deliver({ type: "token", seq: 3, run_id: "r1", content: "Hi" });
    socket.deliver({ type: "tool_result", seq: 4, id: "c", run_id: "r1", name: "x", status: "invalid_arguments", source: "client", error: "bad" });
    assert.equal(bridge.stop(), true);
    assert.deepEqual(socket.sentOfType("stop"), [{ type: "stop" }]);
    socket.deliver({ type: "complete", seq: 5, run_id: "r1", reason: "stopped", steps: 1 });
    assert.equal(bridge.runId, null);
    assert.deepEqual(seen, [
      ["runStart", "r1"],
      ["token", "r1"],
      ["toolResult", "r1"],
      ["runComplete", "r1"],
    ]);
    assert.equal(bridge.lastSeq, 5);
  });
});

describe("tool calls", () => {
  it("runs the handler and answers with the same id", async () => {
    const { socket } = connected();
    socket.deliver(request("c1", "echo", { text: "hi" }));
    await settle();
    assert.deepEqual(socket.sentOfType("tool_response"), [
      { type: "tool_response", id: "c1", status: "ok", result: { text: "hi" } },
    ]);
  });

  it("keeps concurrent calls apart when they finish out of order", async () => {
    const release = {};
    const slow = {
      name: "slow",
      handler: ({ n }) => new Promise((resolve) => (release[n] = () => resolve(n * 10))),
    };
    const { socket } = connected({}, [slow]);
    socket.deliver(request("a", "slow", { n: 1 }));
    socket.deliver(request("b", "slow", { n: 2 }));
    await settle();
    release[2]();
    await settle();
    release[1]();
    await settle();
    assert.deepEqual(
      socket.sentOfType("tool_response").map((m) => [m.id, m.result]),
      [["b", 20], ["a", 10]],
    );
  });

  it("gives the handler its context: id, run, timeout, interactive", async () => {
    let context;
    const tool = { name: "look", handler: (_args, ctx) => { context = ctx; return null; } };
    const { socket } = connected({}, [tool]);
    socket.deliver(request("c9", "look", {}, { interactive: true, timeout_ms: 1234 }));
    await settle();
    assert.equal(context.id, "c9");
    assert.equal(context.runId, "r1");
    assert.equal(context.timeoutMs, 1234);
    assert.equal(context.interactive, true);
    assert.equal(context.signal.aborted, false);
    assert.deepEqual(socket.sentOfType("tool_response")[0], { type: "tool_response", id: "c9", status: "ok", result: null });
  });

  it("turns a thrown error into an error response, with a code when there is one", async () => {
    const tools = [
      { name: "plain", handler: () => { throw new Error("boom"); } },
      { name: "coded", handler: async () => { throw new ToolCallError("no access", "permission_denied"); } },
    ];
    const { socket } = connected({}, tools);
    socket.deliver(request("p", "plain"));
    socket.deliver(request("c", "coded"));
    socket.deliver(request("u", "missing"));
    await settle();
    const byId = Object.fromEntries(socket.sentOfType("tool_response").map((m) => [m.id, m]));
    assert.deepEqual(byId.p, { type: "tool_response", id: "p", status: "error", error: { message: "boom" } });
    assert.deepEqual(byId.c.error, { message: "no access", code: "permission_denied" });
    assert.equal(byId.u.status, "error");
    assert.equal(byId.u.error.code, "unknown_tool");
  });

  it("reports a refusal as denied, from ToolDenied or context.deny()", async () => {
    const tools = [
      { name: "thrown", handler: () => { throw new ToolDenied("no thanks"); } },
      { name: "ctx", handler: (_a, ctx) => ctx.deny() },
    ];
    const { socket } = connected({}, tools);
    socket.deliver(request("t", "thrown"));
    socket.deliver(request("x", "ctx"));
    await settle();
    const byId = Object.fromEntries(socket.sentOfType("tool_response").map((m) => [m.id, m]));
    assert.deepEqual(byId.t, { type: "tool_response", id: "t", status: "denied", error: { message: "no thanks" } });
    assert.equal(byId.x.status, "denied");
  });

  it("aborts the handler's signal on tool_cancel and sends nothing for that call", async () => {
    let signal;
    let finish;
    const tool = {
      name: "wait",
      handler: (_a, ctx) => {
        signal = ctx.signal;
        return new Promise((resolve) => (finish = resolve));
      },
    };
    const { bridge, socket } = connected({}, [tool]);
    const cancels = [];
    bridge.on("toolCancel", (e) => cancels.push(e.id));
    socket.deliver(request("w", "wait"));
    await settle();
    socket.deliver({ type: "tool_cancel", seq: 6, id: "w", reason: "stopped" });
    assert.equal(signal.aborted, true);
    assert.equal(signal.reason.name, "AbortError");
    assert.match(signal.reason.message, /stopped/);
    assert.deepEqual(cancels, ["w"]);
    finish("too late");
    await settle();
    assert.deepEqual(socket.sentOfType("tool_response"), []);
  });

  it("ignores a second request with an id already in flight", async () => {
    let calls = 0;
    let finish;
    const tool = { name: "once", handler: () => { calls += 1; return new Promise((r) => (finish = r)); } };
    const { socket } = connected({}, [tool]);
    socket.deliver(request("d", "once"));
    socket.deliver(request("d", "once"));
    await settle();
    finish(1);
    await settle();
    assert.equal(calls, 1);
    assert.equal(socket.sentOfType("tool_response").length, 1);
  });

  it("sends tool_progress from reportProgress, clamped to 0..1", async () => {
    let finish;
    const tool = {
      name: "work",
      handler: (_a, ctx) => {
        ctx.reportProgress(0.5, "halfway");
        ctx.reportProgress(7);
        return new Promise((r) => (finish = r));
      },
    };
    const { bridge, socket } = connected({}, [tool]);
    const events = [];
    bridge.on("toolProgress", (e) => events.push(e));
    socket.deliver(request("g", "work"));
    await settle();
    assert.deepEqual(socket.sentOfType("tool_progress"), [
      { type: "tool_progress", id: "g", progress: 0.5, message: "halfway" },
      { type: "tool_progress", id: "g", progress: 1 },
    ]);
    assert.equal(events.length, 2);
    finish("done");
  });

  it("answers with an error when the result cannot be encoded as JSON", async () => {
    const cyclic = {};
    cyclic.self = cyclic;
    const { socket } = connected({}, [{ name: "cycle", handler: () => cyclic }]);
    socket.deliver(request("y", "cycle"));
    await settle();
    const [response] = socket.sentOfType("tool_response");
    assert.equal(response.status, "error");
    assert.equal(response.error.code, "unserializable_result");
  });

  it("registers and removes tools on a live connection", () => {
    const { bridge, socket } = connected();
    const remove = bridge.registerTool({ name: "late", handler: () => 1 });
    assert.deepEqual(socket.sentOfType("register_tools")[0].tools.map((t) => t.name), ["late"]);
    socket.deliver({
      type: "tools_updated",
      seq: 2,
      tools: { accepted: [], rejected: [{ name: "late", code: "duplicate_tool", reason: "exists" }] },
      removed: [],
      active: ["echo"],
    });
    assert.deepEqual(bridge.rejectedTools.map((r) => r.code), ["duplicate_tool"]);
    bridge.unregisterTool("echo");
    assert.deepEqual(socket.sentOfType("unregister_tools"), [{ type: "unregister_tools", names: ["echo"] }]);
    remove();
    assert.deepEqual(bridge.toolNames, []);
    assert.throws(() => bridge.registerTools([echo, echo]), /already registered/);
  });
});

describe("reconnecting", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("retries at once, then with growing delays, says hello again and resets after ready", () => {
    const { bridge, fake, statuses } = connected();
    fake.last().drop(1006);
    assert.deepEqual(statuses.at(-1), { status: "reconnecting", attempt: 1, delayMs: 0, code: 1006, reason: "" });
    assert.equal(fake.sockets.length, 1);
    mock.timers.tick(0);
    assert.equal(fake.sockets.length, 2);
    // The server is still down: each wait is longer than the last.
    fake.last().drop(1006);
    assert.equal(statuses.at(-1).delayMs, 250);
    mock.timers.tick(249);
    assert.equal(fake.sockets.length, 2);
    mock.timers.tick(1);
    assert.equal(fake.sockets.length, 3);
    fake.last().drop(1006);
    assert.equal(statuses.at(-1).delayMs, 500);
    mock.timers.tick(500);
    fake.last().drop(1006);
    assert.equal(statuses.at(-1).delayMs, 1000);
    mock.timers.tick(1000);
    const socket = fake.last();
    socket.open();
    assert.deepEqual(socket.sentOfType("hello")[0].tools.map((t) => t.name), ["echo"]);
    socket.deliver(ready(["echo"]));
    assert.equal(bridge.status, "open");
    socket.drop(1011);
    assert.equal(statuses.at(-1).delayMs, 0);
  });

  it("caps the delay and applies jitter", () => {
    const { fake, statuses } = connected({
      reconnect: { initialDelayMs: 100, maxDelayMs: 300, factor: 3, jitter: 0.5 },
      random: () => 1,
    });
    fake.last().drop(1006);
    mock.timers.tick(0);
    fake.last().drop(1006);
    mock.timers.tick(50);
    fake.last().drop(1006);
    mock.timers.tick(150);
    fake.last().drop(1006);
    assert.deepEqual(statuses.filter((s) => s.status === "reconnecting" && s.delayMs !== undefined).map((s) => s.delayMs), [0, 50, 150, 150]);
  });

  it("aborts calls in flight and ends the run as disconnected when the socket drops", async () => {
    let signal;
    const tool = { name: "wait", handler: (_a, ctx) => { signal = ctx.signal; return new Promise(() => {}); } };
    const { bridge, fake } = connected({}, [tool]);
    const completes = [];
    bridge.on("runComplete", (e) => completes.push(e));
    fake.last().deliver({ type: "run_started", seq: 2, run_id: "r1", content: "x" });
    fake.last().deliver(request("w", "wait"));
    await settle();
    fake.last().drop(1006);
    assert.equal(signal.aborted, true);
    assert.deepEqual(completes, [{ runId: "r1", reason: "disconnected", steps: 0, usage: null }]);
    assert.equal(bridge.runId, null);
  });

  for (const code of [4401, 4403, 4409, 1008, 1009]) {
    it(`does not reconnect after close code ${code}`, () => {
      const { bridge, fake } = connected();
      fake.last().drop(code, "no");
      assert.equal(bridge.status, "closed");
      mock.timers.tick(60_000);
      assert.equal(fake.sockets.length, 1);
    });
  }

  it("stays closed after close() and can be connected again", () => {
    const { bridge, fake } = connected();
    bridge.close();
    assert.equal(bridge.status, "closed");
    assert.deepEqual(fake.last().closedWith, { code: 1000, reason: "client closed" });
    mock.timers.tick(60_000);
    assert.equal(fake.sockets.length, 1);
    assert.equal(bridge.stop(), false);
    bridge.connect();
    assert.equal(fake.sockets.length, 2);
  });

  it("does not reconnect when reconnect is false", () => {
    const { bridge, fake } = connected({ reconnect: false });
    fake.last().drop(1006);
    assert.equal(bridge.status, "closed");
    mock.timers.tick(60_000);
    assert.equal(fake.sockets.length, 1);
  });

  it("ignores messages from a socket it has already left", () => {
    const { bridge, fake } = connected();
    const old = fake.last();
    old.drop(1006);
    mock.timers.tick(0);
    const tokens = [];
    bridge.on("token", (e) => tokens.push(e));
    old.deliver({ type: "token", seq: 9, run_id: "r", content: "stale" });
    assert.deepEqual(tokens, []);
  });
});
