// Resume: the session outlives its connections (drops, dead links, page reloads), no frame is
// processed twice, no result is lost before the server has it, and no handler runs twice.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { AgentBridge } from "../dist/index.js";
import { FakeStorage, fakeSockets, resumableReady, settle } from "./fake-socket.js";

/** A tool whose calls finish when the test says so, counting how often its handler ran. */
function controlled(name, hints = {}) {
  const tool = {
    name,
    ...hints,
    runs: [],
    finish: {},
    handler: (args, ctx) => {
      tool.runs.push({ id: ctx.id, rerun: ctx.rerun, signal: ctx.signal });
      return new Promise((resolve) => (tool.finish[ctx.id] = resolve));
    },
  };
  return tool;
}

function bridgeWith(tools, options = {}) {
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
  for (const type of ["status", "resumed", "snapshot", "reset", "stepRetry", "token", "runComplete", "error"]) {
    bridge.on(type, (e) => events.push([type, e]));
  }
  return { bridge, fake, events, of: (type) => events.filter(([t]) => t === type).map(([, e]) => e) };
}

/** Connected and greeted by a server that hands out a resume token. */
function resumable(tools = [], options = {}) {
  const env = bridgeWith(tools, options);
  env.bridge.connect();
  env.fake.last().open();
  env.fake.last().deliver(resumableReady(tools.map((t) => t.name)));
  return env;
}

/** The dropped client reconnects (at once) and the server carries the session on. */
function resume(env, resumed = {}) {
  mock.timers.tick(0);
  const socket = env.fake.last();
  socket.open();
  socket.deliver(resumableReady([], { resumed: { from_seq: env.bridge.lastSeq + 1, ...resumed } }));
  return socket;
}

function request(seq, id, name, args = {}, extra = {}) {
  return { type: "tool_request", seq, id, run_id: "r1", name, arguments: args, timeout_ms: 5000, ...extra };
}

const responses = (socket) => socket.sentOfType("tool_response");

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
afterEach(() => mock.timers.reset());

describe("seq", () => {
  it("processes each frame once, replays included, and keeps ready and snapshot apart", () => {
    const { bridge, fake, of } = resumable();
    const socket = fake.last();
    for (const seq of [1, 2, 2, 1, 3]) socket.deliver({ type: "token", seq, run_id: "r1", content: `t${seq}` });
    assert.deepEqual(of("token").map((t) => t.content), ["t1", "t2", "t3"]);
    assert.equal(bridge.lastSeq, 3);
    socket.drop(1006);
    const again = resume({ bridge, fake });
    assert.deepEqual(again.sentOfType("hello")[0].resume, { token: "tok-1", last_seq: 3 });
    // The server replays from where the client said it was; what overlaps is dropped.
    for (const seq of [3, 4]) again.deliver({ type: "token", seq, run_id: "r1", content: `t${seq}` });
    assert.deepEqual(of("token").map((t) => t.content), ["t1", "t2", "t3", "t4"]);
  });

  it("takes its place in the stream from a snapshot, and tells the app", () => {
    const { bridge, fake, of } = resumable();
    fake.last().drop(1006);
    const socket = resume({ bridge, fake }, { gap: true });
    socket.deliver({ type: "snapshot", last_seq: 40, turns: [{ role: "user", content: "hi" }], run: { run_id: "r7", content: "Hel" }, pending_calls: [] });
    assert.equal(bridge.lastSeq, 40);
    assert.equal(bridge.runId, "r7");
    assert.equal(of("snapshot")[0].turns[0].content, "hi");
    assert.equal(of("resumed")[0].gap, true);
    socket.deliver({ type: "token", seq: 40, run_id: "r7", content: "old" });
    socket.deliver({ type: "token", seq: 41, run_id: "r7", content: "lo" });
    assert.deepEqual(of("token").map((t) => t.content), ["lo"]);
  });

  it("passes step_retry on as stepRetry", () => {
    const { fake, of } = resumable();
    fake.last().deliver({ type: "step_retry", seq: 1, run_id: "r1", step: 2, attempt: 1, reason: "model_connection" });
    assert.deepEqual(of("stepRetry").map((e) => [e.runId, e.step]), [["r1", 2]]);
  });
});

describe("a dropped connection", () => {
  it("lets handlers and the run go on, and sends a result that finished meanwhile on resume", async () => {
    const slow = controlled("slow");
    const env = resumable([slow]);
    const first = env.fake.last();
    first.deliver({ type: "run_started", seq: 1, run_id: "r1", content: "go" });
    first.deliver(request(2, "c1", "slow"));
    await settle();
    first.drop(1006);
    assert.equal(slow.runs[0].signal.aborted, false);
    assert.equal(env.bridge.runId, "r1");
    assert.deepEqual(env.of("runComplete"), []);
    slow.finish.c1({ done: true });
    await settle();
    assert.deepEqual(env.bridge.unacknowledged, ["c1"]);
    const second = resume(env, { pending_calls: ["c1"] });
    assert.deepEqual(responses(second), [{ type: "tool_response", id: "c1", status: "ok", result: { done: true } }]);
    assert.deepEqual(env.of("resumed")[0].resent, ["c1"]);
    // The server redelivers the request it still waits for: answered already, nothing more.
    second.deliver(request(3, "c1", "slow", {}, { redelivered: true }));
    await settle();
    assert.equal(responses(second).length, 1);
    assert.equal(slow.runs.length, 1);
  });

  it("keeps a sent result until its tool_result, and sends it again if the server is still waiting", async () => {
    const quick = { name: "quick", handler: () => "r" };
    const env = resumable([quick]);
    env.fake.last().deliver(request(1, "a", "quick"));
    env.fake.last().deliver(request(2, "b", "quick"));
    await settle();
    assert.equal(responses(env.fake.last()).length, 2);
    env.fake.last().deliver({ type: "tool_result", seq: 3, id: "a", run_id: "r1", name: "quick", status: "ok", source: "client", result: "r" });
    assert.deepEqual(env.bridge.unacknowledged, ["b"]);
    // The link dies after "b" was written but before the server read it.
    env.fake.last().drop(1006);
    const socket = resume(env, { pending_calls: ["b"] });
    assert.deepEqual(responses(socket).map((r) => r.id), ["b"]);
    env.fake.last().drop(1006);
    // This time the server had it: not pending any more, so it is forgotten, not sent.
    const third = resume(env, { pending_calls: [] });
    assert.deepEqual(responses(third), []);
    assert.deepEqual(env.bridge.unacknowledged, []);
  });

  it("never runs a handler twice: not on a replay, not on a redelivery, not while it still runs", async () => {
    const slow = controlled("slow");
    const env = resumable([slow]);
    env.fake.last().deliver(request(1, "c1", "slow"));
    await settle();
    env.fake.last().drop(1006);
    const socket = resume(env, { pending_calls: ["c1"] });
    socket.deliver(request(2, "c1", "slow", {}, { redelivered: true }));
    await settle();
    assert.equal(slow.runs.length, 1);
    assert.deepEqual(responses(socket), []);
    slow.finish.c1(7);
    await settle();
    assert.deepEqual(responses(socket).map((r) => [r.id, r.result]), [["c1", 7]]);
    // A later connection that never heard the answer is sent the kept result, not a new run.
    socket.drop(1006);
    mock.timers.tick(0);
    const later = env.fake.last();
    later.open();
    later.deliver(resumableReady([], { resumed: { from_seq: 3, pending_calls: [] } }));
    assert.equal(slow.runs.length, 1);
    later.deliver(request(3, "c1", "slow", {}, { redelivered: true }));
    await settle();
    assert.equal(slow.runs.length, 1);
  });

  it("holds a result that finishes before the new connection is ready, and sends it after the resume", async () => {
    const slow = controlled("slow");
    const env = resumable([slow]);
    env.fake.last().deliver(request(1, "c1", "slow"));
    await settle();
    env.fake.last().drop(1006);
    mock.timers.tick(0);
    const socket = env.fake.last();
    socket.open();
    slow.finish.c1("v");
    await settle();
    // Not before `ready`: until then it is unknown whether the server still has the call.
    assert.deepEqual(responses(socket), []);
    socket.deliver(resumableReady([], { resumed: { from_seq: 2, pending_calls: ["c1"] } }));
    assert.deepEqual(responses(socket).map((r) => [r.id, r.result]), [["c1", "v"]]);
  });

  it("stops a handler whose call ended at the server while the link was down", async () => {
    const slow = controlled("slow");
    const env = resumable([slow]);
    env.fake.last().deliver(request(1, "c1", "slow"));
    await settle();
    env.fake.last().drop(1006);
    resume(env, { pending_calls: [] });
    assert.equal(slow.runs[0].signal.aborted, true);
    slow.finish.c1("late");
    await settle();
    assert.deepEqual(responses(env.fake.last()), []);
  });

  it("tells the app when the server no longer had the session, and starts afresh", async () => {
    const slow = controlled("slow");
    const env = resumable([slow]);
    const first = env.fake.last();
    first.deliver({ type: "run_started", seq: 8, run_id: "r1", content: "go" });
    first.deliver(request(9, "c1", "slow"));
    await settle();
    first.drop(1006);
    mock.timers.tick(0);
    const socket = env.fake.last();
    socket.open();
    socket.deliver({ type: "error", seq: 1, code: "session_expired", message: "no such session" });
    socket.deliver(resumableReady(["slow"], { token: "tok-2" }));
    assert.deepEqual(env.of("reset"), [{ code: "session_expired", message: "no such session" }]);
    assert.equal(slow.runs[0].signal.aborted, true);
    assert.deepEqual(env.of("runComplete").map((e) => e.reason), ["disconnected"]);
    assert.equal(env.bridge.lastSeq, 0);
    socket.deliver({ type: "token", seq: 1, run_id: "r2", content: "fresh" });
    assert.deepEqual(env.of("token").map((t) => t.content), ["fresh"]);
    socket.drop(1006);
    mock.timers.tick(0);
    env.fake.last().open();
    assert.equal(env.fake.last().sentOfType("hello")[0].resume.token, "tok-2");
  });

  it("stops for good on a refused resume, and forgets the session", () => {
    const storage = new FakeStorage();
    const env = resumable([], { storage });
    assert.equal(storage.json().token, "tok-1");
    env.fake.last().drop(1006);
    mock.timers.tick(0);
    const socket = env.fake.last();
    socket.open();
    socket.deliver({ type: "error", code: "resume_denied", message: "wrong token" });
    socket.drop(4403, "forbidden");
    assert.equal(env.bridge.status, "closed");
    mock.timers.tick(60_000);
    assert.equal(env.fake.sockets.length, 2);
    assert.equal(storage.json(), null);
  });
});

describe("user messages across drops", () => {
  const messages = (socket) => socket.sentOfType("message").map((m) => m.content);
  const pongFor = (socket, seq) => ({ type: "pong", seq, nonce: socket.sentOfType("ping").at(-1).nonce });

  it("sends a message lost with the connection again, once the server shows it never got it", () => {
    const env = resumable();
    env.bridge.send("first");
    assert.deepEqual(messages(env.fake.last()), ["first"]);
    env.fake.last().drop(1006);
    env.bridge.send("second");
    const socket = resume(env);
    // Not yet: a run it started could still be in the replay.
    assert.deepEqual(messages(socket), []);
    socket.deliver(pongFor(socket, 1));
    assert.deepEqual(messages(socket), ["first", "second"]);
  });

  it("does not send again a message whose run shows up in the replay or the snapshot", () => {
    const env = resumable();
    env.bridge.send("go");
    env.fake.last().drop(1006);
    const socket = resume(env);
    socket.deliver({ type: "run_started", seq: 1, run_id: "r1", content: "go" });
    socket.deliver(pongFor(socket, 2));
    socket.deliver({ type: "complete", seq: 3, run_id: "r1", reason: "done", steps: 1 });
    assert.deepEqual(messages(socket), []);
    assert.equal(socket.sentOfType("ping").length, 1);

    env.bridge.send("again");
    socket.drop(1006);
    const third = resume(env, { gap: true });
    third.deliver({ type: "snapshot", last_seq: 9, turns: [{ role: "user", content: "go", run_id: "r1" }, { role: "user", content: "again", run_id: "r2" }] });
    // Confirmed by the snapshot: nothing in doubt, so not even a check.
    assert.deepEqual(third.sentOfType("ping"), []);
    assert.deepEqual(messages(third), []);
  });

  it("waits for a run in progress before deciding: the message may be queued behind it", () => {
    const env = resumable();
    env.fake.last().deliver({ type: "run_started", seq: 1, run_id: "r1", content: "one" });
    env.bridge.send("two");
    env.fake.last().drop(1006);
    const socket = resume(env);
    socket.deliver(pongFor(socket, 2));
    assert.deepEqual(messages(socket), []);
    socket.deliver({ type: "complete", seq: 3, run_id: "r1", reason: "done", steps: 1 });
    socket.deliver(pongFor(socket, 4));
    assert.deepEqual(messages(socket), ["two"]);
  });

  it("forgets messages written to a session that is gone", () => {
    const env = resumable();
    env.bridge.send("lost");
    env.fake.last().drop(1006);
    env.bridge.send("unsent");
    mock.timers.tick(0);
    const socket = env.fake.last();
    socket.open();
    socket.deliver(resumableReady([], { token: "tok-2" }));
    assert.deepEqual(messages(socket), ["unsent"]);
  });
});

describe("dead link", () => {
  it("gives up on a link with no frame for heartbeat interval + timeout, and resumes", () => {
    const env = resumable();
    const socket = env.fake.last();
    mock.timers.tick(39_999);
    socket.deliver({ type: "ping", seq: 1, nonce: "n" });
    mock.timers.tick(39_999);
    assert.equal(env.bridge.status, "open");
    mock.timers.tick(1);
    assert.deepEqual(socket.closedWith, { code: 4000, reason: "dead link" });
    const lost = env.of("status").find((s) => s.reason !== undefined);
    assert.equal(lost.status, "reconnecting");
    assert.equal(lost.delayMs, 0);
    assert.match(lost.reason, /no frame from the server for 40000 ms/);
    assert.equal(env.fake.sockets.length, 2);
    env.fake.last().open();
    assert.deepEqual(env.fake.last().sentOfType("hello")[0].resume, { token: "tok-1", last_seq: 1 });
  });

  it("gives up on a handshake that never completes", () => {
    const env = bridgeWith([]);
    env.bridge.connect();
    mock.timers.tick(14_999);
    assert.equal(env.fake.sockets.length, 1);
    mock.timers.tick(1);
    assert.equal(env.fake.sockets[0].closedWith.code, 4000);
    assert.equal(env.fake.sockets.length, 2);
  });

  it("takes an error before the socket opened as its end, where no close follows", () => {
    const env = bridgeWith([]);
    env.bridge.connect();
    env.fake.last().onerror({});
    assert.equal(env.bridge.status, "reconnecting");
    mock.timers.tick(0);
    assert.equal(env.fake.sockets.length, 2);
    // A late close from the abandoned socket changes nothing.
    env.fake.sockets[0].drop(1006);
    assert.equal(env.fake.sockets.length, 2);
  });

  it("is not armed once closed", () => {
    const env = resumable();
    env.bridge.close();
    mock.timers.tick(120_000);
    assert.equal(env.fake.sockets.length, 1);
    assert.equal(env.bridge.status, "closed");
  });
});

describe("leaving", () => {
  it("bye() says bye, closes for good and forgets the session", () => {
    const storage = new FakeStorage();
    const env = resumable([], { storage });
    env.bridge.bye();
    assert.deepEqual(env.fake.last().sentOfType("bye"), [{ type: "bye" }]);
    assert.deepEqual(env.fake.last().closedWith, { code: 1000, reason: "bye" });
    assert.equal(env.bridge.status, "closed");
    mock.timers.tick(60_000);
    assert.equal(env.fake.sockets.length, 1);
    assert.equal(storage.items.size, 0);
    assert.equal(env.bridge.resumable, false);
  });

  it("close() stops handlers; connect() later resumes and reports their outcome as unknown", async () => {
    const write = controlled("write");
    const env = resumable([write]);
    env.fake.last().deliver(request(1, "w", "write"));
    await settle();
    env.bridge.close();
    assert.equal(write.runs[0].signal.aborted, true);
    env.bridge.connect();
    const socket = env.fake.last();
    socket.open();
    assert.deepEqual(socket.sentOfType("hello")[0].resume, { token: "tok-1", last_seq: 1 });
    socket.deliver(resumableReady(["write"], { resumed: { from_seq: 2, pending_calls: ["w"] } }));
    socket.deliver(request(2, "w", "write", {}, { redelivered: true }));
    await settle();
    assert.deepEqual(responses(socket).map((r) => [r.id, r.status]), [["w", "outcome_unknown"]]);
    assert.equal(write.runs.length, 1);
  });

  it("sends the idempotent hint with the tool", () => {
    const env = bridgeWith([{ name: "put", idempotent: true, handler: () => null }]);
    env.bridge.connect();
    env.fake.last().open();
    assert.equal(env.fake.last().sentOfType("hello")[0].tools[0].idempotent, true);
  });
});

describe("a page reload", () => {
  function reload(storage, tools, options = {}) {
    const env = bridgeWith(tools, { storage, ...options });
    env.bridge.connect();
    env.fake.last().open();
    return env;
  }

  it("resumes the same session: outcome_unknown for an unfinished write, a re-run for a read, kept results resent", async () => {
    const storage = new FakeStorage();
    const before = { write: controlled("write"), read: controlled("read", { readOnly: true }), quick: { name: "quick", handler: () => "q" } };
    const old = resumable(Object.values(before), { storage });
    const socket = old.fake.last();
    socket.deliver({ type: "run_started", seq: 1, run_id: "r1", content: "go" });
    socket.deliver(request(2, "w", "write", { x: 1 }));
    socket.deliver(request(3, "r", "read", { y: 2 }));
    socket.deliver(request(4, "q", "quick"));
    // The quick answer is written to the socket, but the page goes before the server reads it.
    await settle();
    const saved = storage.json();
    assert.equal(saved.token, "tok-1");
    assert.equal(saved.lastSeq, 4);
    assert.deepEqual(saved.calls.map((c) => [c.id, c.name]).sort(), [["r", "read"], ["w", "write"]]);
    assert.deepEqual(saved.results.map((r) => r.id), ["q"]);

    // The new page: the same tools, fresh handlers, the same storage.
    const after = { write: controlled("write"), read: controlled("read", { readOnly: true }), quick: { name: "quick", handler: () => "again" } };
    const env = reload(storage, Object.values(after));
    const next = env.fake.last();
    // It asks for the whole conversation, since the page has lost what it showed.
    assert.deepEqual(next.sentOfType("hello")[0].resume, { token: "tok-1", last_seq: 0 });
    next.deliver(resumableReady(["write", "read", "quick"], { resumed: { from_seq: 1, gap: true, pending_calls: ["w", "r", "q"] } }));
    next.deliver({ type: "snapshot", last_seq: 4, turns: [{ role: "user", content: "go" }], run: { run_id: "r1", content: "" }, pending_calls: ["w", "r", "q"] });
    const resumed = env.of("resumed")[0];
    assert.equal(resumed.reload, true);
    assert.deepEqual(resumed.resent, ["q"]);
    assert.deepEqual(resumed.outcomeUnknown, ["w"]);
    for (const [seq, id, name] of [[5, "w", "write"], [6, "r", "read"], [7, "q", "quick"]]) {
      next.deliver(request(seq, id, name, {}, { redelivered: true }));
    }
    await settle();
    assert.equal(after.write.runs.length, 0);
    assert.deepEqual(after.read.runs.map((r) => [r.id, r.rerun]), [["r", true]]);
    after.read.finish.r({ read: true });
    await settle();
    assert.deepEqual(
      responses(next).map((r) => [r.id, r.status]),
      [["q", "ok"], ["w", "outcome_unknown"], ["r", "ok"]],
    );
    assert.equal(responses(next)[0].result, "q");
    assert.equal(env.bridge.lastSeq, 7);
  });

  it("re-runs an idempotent tool, and forgets calls the server no longer waits for", async () => {
    const storage = new FakeStorage();
    const old = resumable([controlled("put", { idempotent: true }), controlled("gone")], { storage });
    old.fake.last().deliver(request(1, "p", "put"));
    old.fake.last().deliver(request(2, "g", "gone"));
    await settle();
    const put = controlled("put", { idempotent: true });
    const gone = controlled("gone");
    const env = reload(storage, [put, gone]);
    env.fake.last().deliver(resumableReady([], { resumed: { from_seq: 1, gap: true, pending_calls: ["p"] } }));
    env.fake.last().deliver(request(3, "p", "put", {}, { redelivered: true }));
    await settle();
    assert.deepEqual(put.runs.map((r) => r.rerun), [true]);
    assert.deepEqual(responses(env.fake.last()), []);
    assert.deepEqual(storage.json().calls.map((c) => c.id), ["p"]);
  });

  it("can replay instead, for an app that kept its own view", () => {
    const storage = new FakeStorage();
    const old = resumable([], { storage });
    old.fake.last().deliver({ type: "token", seq: 12, run_id: "r1", content: "x" });
    const env = reload(storage, [], { afterReload: "replay" });
    assert.deepEqual(env.fake.last().sentOfType("hello")[0].resume, { token: "tok-1", last_seq: 12 });
  });

  it("keeps a generated session id, so the reloaded page finds its session", () => {
    const storage = new FakeStorage();
    const fake = fakeSockets();
    const options = { WebSocket: fake.FakeSocket, autoConnect: false, storage };
    const first = new AgentBridge("ws://127.0.0.1:9", options);
    first.connect();
    fake.last().open();
    fake.last().deliver(resumableReady([]));
    const second = new AgentBridge("ws://127.0.0.1:9", options);
    assert.equal(second.sessionId, first.sessionId);
    const other = new AgentBridge("ws://127.0.0.1:10", options);
    assert.notEqual(other.sessionId, first.sessionId);
  });

  it("does not resume without a token, and works without storage", () => {
    const storage = new FakeStorage();
    storage.setItem("unrelated", "1");
    const env = reload(storage, []);
    assert.equal(env.fake.last().sentOfType("hello")[0].resume, undefined);
    const broken = { getItem: () => { throw new Error("denied"); }, setItem: () => { throw new Error("full"); }, removeItem: () => undefined };
    const b = bridgeWith([], { storage: broken });
    b.bridge.connect();
    b.fake.last().open();
    b.fake.last().deliver(resumableReady([]));
    assert.equal(b.bridge.status, "open");
    assert.deepEqual(b.of("error").map((e) => e.code), ["client_storage_failed"]);
  });
});
