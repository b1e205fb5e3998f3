// Reconnecting quickly and honestly: at once when the page or the network comes back, often after
// a server restart, as asked after 4429, with a watchdog of twice the heartbeat; tickets.

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { AgentBridge, retryHintMs } from "../dist/index.js";
import { LIMITS, fakeSockets, resumableReady, settle } from "./fake-socket.js";

/** A page as far as the client listens to it: an EventTarget with a visibility state. */
class FakePage extends EventTarget {
  visibilityState = "visible";
  fire(type, init = {}) {
    this.dispatchEvent(Object.assign(new Event(type), init));
  }
}

function start(options = {}) {
  const fake = fakeSockets();
  const page = new FakePage();
  const bridge = new AgentBridge("ws://127.0.0.1:9/", {
    sessionId: "s1",
    WebSocket: fake.FakeSocket,
    autoConnect: false,
    random: () => 0,
    storage: null,
    page,
    ...options,
  });
  const statuses = [];
  bridge.on("status", (e) => statuses.push(e));
  return { bridge, fake, page, statuses, delays: () => statuses.filter((e) => e.delayMs !== undefined).map((e) => e.delayMs) };
}

function greet(env, ready = resumableReady([])) {
  env.fake.last().open();
  env.fake.last().deliver(ready);
}

describe("reconnecting at once", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"] }));
  afterEach(() => mock.timers.reset());

  function waiting() {
    const env = start();
    env.bridge.connect();
    greet(env);
    env.fake.last().drop(1006);
    mock.timers.tick(0);
    env.fake.last().drop(1006); // the first retry fails too: the next waits its backoff
    assert.ok(env.delays().at(-1) > 0);
    return env;
  }

  it("when the browser is back online", () => {
    const env = waiting();
    const before = env.fake.sockets.length;
    env.page.fire("online");
    assert.equal(env.fake.sockets.length, before + 1);
  });

  it("when the page becomes visible again, and not when it is hidden", () => {
    const env = waiting();
    const before = env.fake.sockets.length;
    env.page.visibilityState = "hidden";
    env.page.fire("visibilitychange");
    assert.equal(env.fake.sockets.length, before);
    env.page.visibilityState = "visible";
    env.page.fire("visibilitychange");
    assert.equal(env.fake.sockets.length, before + 1);
  });

  it("tests a quiet open link when the page comes back, and drops it if nothing answers", () => {
    const env = start();
    env.bridge.connect();
    greet(env);
    const socket = env.fake.last();
    mock.timers.tick(LIMITS.heartbeat_interval_ms + 1);
    env.page.fire("visibilitychange");
    assert.equal(socket.sentOfType("ping").length, 1);
    mock.timers.tick(5_000);
    assert.deepEqual(socket.closedWith, { code: 4000, reason: "dead link" });
    assert.equal(env.bridge.status, "reconnecting");
  });

  it("keeps knocking often after a server restart close instead of backing off to 10 s", () => {
    const env = start();
    env.bridge.connect();
    greet(env);
    env.fake.last().drop(1012, "service restart");
    for (let i = 0; i < 8; i += 1) {
      mock.timers.tick(env.delays().at(-1));
      env.fake.last().drop(1006);
    }
    assert.equal(env.delays()[0], 0);
    assert.ok(Math.max(...env.delays()) <= 1000, `delays ${env.delays()}`);
  });

  it("after 1001 (going away) too", () => {
    const env = start();
    env.bridge.connect();
    greet(env);
    env.fake.last().drop(1001);
    for (let i = 0; i < 8; i += 1) {
      mock.timers.tick(env.delays().at(-1));
      env.fake.last().drop(1006);
    }
    assert.ok(Math.max(...env.delays()) <= 1000);
  });
});

describe("4429", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"] }));
  afterEach(() => mock.timers.reset());

  it("waits as the close reason asks, and the page coming back does not cut the wait short", () => {
    const env = start();
    env.bridge.connect();
    greet(env);
    env.fake.last().drop(4429, "kept sending past the rate limit; retry in 12 s");
    assert.equal(env.delays().at(-1), 12_000);
    const before = env.fake.sockets.length;
    env.page.fire("online");
    mock.timers.tick(11_999);
    assert.equal(env.fake.sockets.length, before);
    mock.timers.tick(1);
    assert.equal(env.fake.sockets.length, before + 1);
  });

  it("waits at least 5 s, and a minute when asked to try again in a minute", () => {
    assert.equal(retryHintMs("too many connections"), 0);
    assert.equal(retryHintMs("retry in 2.5 s"), 2500);
    assert.equal(retryHintMs("try again in a minute"), 60_000);
    const env = start({ random: () => 1 });
    env.bridge.connect();
    greet(env);
    env.fake.last().drop(4429, "too many connections from this address");
    // 5 s, plus up to a quarter so clients refused together come back apart.
    assert.equal(env.delays().at(-1), 6250);
  });
});

describe("the watchdog", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"] }));
  afterEach(() => mock.timers.reset());

  it("is twice the heartbeat interval, or interval + timeout when that is longer", () => {
    for (const [interval, timeout, expected] of [[20_000, 20_000, 40_000], [10_000, 2_000, 20_000], [5_000, 30_000, 35_000]]) {
      const env = start();
      env.bridge.connect();
      greet(env, { ...resumableReady([]), limits: { ...LIMITS, heartbeat_interval_ms: interval, heartbeat_timeout_ms: timeout } });
      const socket = env.fake.last();
      mock.timers.tick(expected - 1);
      assert.equal(socket.closedWith, null, `${interval}/${timeout}`);
      mock.timers.tick(1);
      assert.deepEqual(socket.closedWith, { code: 4000, reason: "dead link" });
      env.bridge.close();
    }
  });
});

describe("tickets", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"] }));
  afterEach(() => mock.timers.reset());

  it("asks for a fresh ticket before each connection and keeps the token out of the URL", async () => {
    let n = 0;
    const env = start({ token: "long-lived", ticket: async () => `t${(n += 1)}` });
    env.bridge.connect();
    assert.equal(env.fake.sockets.length, 0, "no socket before the ticket");
    await settle();
    assert.equal(env.fake.last().url, "ws://127.0.0.1:9/ws/agent/s1?ticket=t1");
    greet(env);
    env.fake.last().drop(1006);
    mock.timers.tick(0);
    await settle();
    assert.equal(env.fake.last().url, "ws://127.0.0.1:9/ws/agent/s1?ticket=t2");
  });

  it("reports a ticket it could not get, and tries again like a dropped connection", async () => {
    let fail = true;
    const env = start({ ticket: async () => { if (fail) throw new Error("401"); return "ok"; } });
    const errors = [];
    env.bridge.on("error", (e) => errors.push(e.code));
    env.bridge.connect();
    await settle();
    assert.deepEqual(errors, ["client_ticket_failed"]);
    assert.equal(env.bridge.status, "reconnecting");
    fail = false;
    mock.timers.tick(0);
    await settle();
    assert.equal(env.fake.last().url, "ws://127.0.0.1:9/ws/agent/s1?ticket=ok");
  });

  it("connects without a ticket when the function gives null, and a 4401 is then final", async () => {
    let wanted = false;
    const env = start({ ticket: () => (wanted ? "t" : null) });
    env.bridge.connect();
    await settle();
    assert.equal(env.fake.last().url, "ws://127.0.0.1:9/ws/agent/s1");
    env.fake.last().drop(4401, "token required");
    assert.equal(env.bridge.status, "closed");
    wanted = true;
    env.bridge.connect();
    await settle();
    assert.equal(env.fake.last().url, "ws://127.0.0.1:9/ws/agent/s1?ticket=t");
  });

  it("tries once more after a 4401 (a ticket can lapse on the way), then gives up", async () => {
    const env = start({ ticket: () => "t" });
    env.bridge.connect();
    await settle();
    env.fake.last().drop(4401, "unknown ticket");
    assert.equal(env.bridge.status, "reconnecting");
    mock.timers.tick(0);
    await settle();
    env.fake.last().drop(4401, "unknown ticket");
    assert.equal(env.bridge.status, "closed");
  });
});
