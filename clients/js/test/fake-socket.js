// An in-process stand-in for the browser's WebSocket: the test plays the server.

export function fakeSockets() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error("send on a socket that is not open");
      this.sent.push(JSON.parse(data));
    }

    close(code = 1000, reason = "") {
      this.closedWith = { code, reason };
      this.readyState = 3;
    }

    // Server side ---------------------------------------------------------------------------

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    deliver(message) {
      this.onmessage?.({ data: typeof message === "string" ? message : JSON.stringify(message) });
    }

    drop(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    sentOfType(type) {
      return this.sent.filter((m) => m.type === type);
    }
  }
  return { FakeSocket, sockets, last: () => sockets[sockets.length - 1] };
}

export const LIMITS = {
  max_message_bytes: 1048576,
  max_tools: 64,
  max_schema_bytes: 32768,
  max_tool_timeout_ms: 300000,
  default_tool_timeout_ms: 30000,
  human_timeout_ms: 600000,
  progress_cap_ms: 600000,
  heartbeat_interval_ms: 20000,
  heartbeat_timeout_ms: 20000,
  max_steps: 8,
  resume_grace_ms: 60000,
};

export function ready(accepted, rejected = [], seq = 1) {
  return {
    type: "ready",
    seq,
    session_id: "s1",
    protocol: 1,
    tools: { accepted, rejected },
    server_tools: [],
    limits: LIMITS,
  };
}

/** A `ready` from a server that can resume: a token, and `resumed` when it carried a session on. */
export function resumableReady(accepted, { token = "tok-1", resumed } = {}) {
  const message = { ...ready(accepted), resume_token: token };
  delete message.seq;
  if (resumed) message.resumed = { gap: false, pending_calls: [], ...resumed };
  return message;
}

/** sessionStorage as far as the client uses it, and survives a "reload" by being shared. */
export class FakeStorage {
  constructor() {
    this.items = new Map();
  }

  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }

  setItem(key, value) {
    this.items.set(key, String(value));
  }

  removeItem(key) {
    this.items.delete(key);
  }

  json() {
    const entries = [...this.items].filter(([key]) => !key.includes(":session:"));
    return entries.length === 1 ? JSON.parse(entries[0][1]) : null;
  }
}

/** Resolves once every queued microtask and already-settled promise has run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
