// A session per tab by default: a reload keeps it, another tab never shares it, and a duplicated
// tab (whose sessionStorage is a copy of the original's) gets its own.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { AgentBridge } from "../dist/index.js";
import { FakeStorage, fakeSockets, resumableReady } from "./fake-socket.js";

class FakePage extends EventTarget {
  visibilityState = "visible";
  fire(type, init = {}) {
    this.dispatchEvent(Object.assign(new Event(type), init));
  }
}

/** A tab: its own page, its own sessionStorage; tabs of one browser share BroadcastChannel. */
function tab(storage = new FakeStorage()) {
  const fake = fakeSockets();
  const page = new FakePage();
  const bridge = new AgentBridge("ws://127.0.0.1:9", { WebSocket: fake.FakeSocket, autoConnect: false, storage, page });
  return { bridge, fake, page, storage };
}

function copy(storage) {
  const twin = new FakeStorage();
  for (const [key, value] of storage.items) twin.setItem(key, value);
  return twin;
}

async function connectAndGreet(t) {
  t.bridge.connect();
  // A duplicate's socket opens once the other tabs have had their say.
  for (let i = 0; i < 50 && t.fake.sockets.length === 0; i += 1) await new Promise((r) => setTimeout(r, 10));
  t.fake.last().open();
  t.fake.last().deliver(resumableReady([], { token: `tok-${t.bridge.sessionId}` }));
}

describe("session ids per tab", () => {
  it("makes one per tab, so two tabs never share a session", () => {
    const a = tab();
    const b = tab();
    assert.notEqual(a.bridge.sessionId, b.bridge.sessionId);
    assert.match(a.bridge.url, new RegExp(`/ws/agent/${a.bridge.sessionId}$`));
  });

  it("keeps it across a reload: the page that went said so, the next takes it without asking", async () => {
    const first = tab();
    await connectAndGreet(first);
    first.page.fire("pagehide");
    first.bridge.close();
    const reloaded = tab(first.storage);
    assert.equal(reloaded.bridge.sessionId, first.bridge.sessionId);
    reloaded.bridge.connect();
    assert.equal(reloaded.fake.sockets.length, 1, "no wait for other tabs");
    reloaded.fake.last().open();
    assert.equal(reloaded.fake.last().sentOfType("hello")[0].resume.token, `tok-${first.bridge.sessionId}`);
  });

  it("gives a duplicated tab its own session, without the original's resume token", async () => {
    const original = tab();
    await connectAndGreet(original);
    const duplicate = tab(copy(original.storage));
    duplicate.bridge.connect();
    await new Promise((r) => setTimeout(r, 300));
    assert.notEqual(duplicate.bridge.sessionId, original.bridge.sessionId);
    const socket = duplicate.fake.last();
    assert.match(socket.url, new RegExp(`/ws/agent/${duplicate.bridge.sessionId}$`));
    socket.open();
    assert.equal(socket.sentOfType("hello")[0].resume, undefined);
    // A reload of the duplicate comes back to the duplicate's own session.
    duplicate.page.fire("pagehide");
    duplicate.bridge.close();
    assert.equal(tab(duplicate.storage).bridge.sessionId, duplicate.bridge.sessionId);
    original.bridge.bye();
  });

  it("takes the id back after a crash (held, but no tab answers)", async () => {
    const crashed = tab();
    await connectAndGreet(crashed);
    const id = crashed.bridge.sessionId;
    crashed.bridge.bye(); // gone without pagehide; bye also stops it answering
    const storage = new FakeStorage();
    storage.setItem(`agent-bridge:v1:session:ws://127.0.0.1:9/`, JSON.stringify({ id, held: true }));
    const next = tab(storage);
    next.bridge.connect();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(next.bridge.sessionId, id);
    assert.equal(next.fake.sockets.length, 1);
  });

  it("leaves an id the app chose alone", () => {
    const storage = new FakeStorage();
    const fake = fakeSockets();
    const bridge = new AgentBridge("ws://127.0.0.1:9", { sessionId: "mine", WebSocket: fake.FakeSocket, autoConnect: false, storage, page: null });
    bridge.connect();
    assert.equal(fake.last().url, "ws://127.0.0.1:9/ws/agent/mine");
  });
});
