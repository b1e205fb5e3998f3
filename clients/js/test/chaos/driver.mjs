// The SDK in node against the real server through the fault proxy: several sessions run their
// conversations while the proxy cuts connections at random; prints what the clients saw.
//
//   node [--experimental-websocket] driver.mjs URL SESSIONS RUNS

import { AgentBridge } from "../../dist/index.js";

const [url, sessions, runs] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4])];
const handlerRuns = {};
const results = {};
const completes = [];
const counts = { resumed: 0, reset: 0, gap: 0, reconnecting: 0, errors: [] };
const bridges = [];

async function session(index) {
  const bridge = new AgentBridge(url, {
    sessionId: `chaos-${index}`,
    storage: null,
    clientName: "chaos",
    reconnect: { initialDelayMs: 20, maxDelayMs: 200 },
  });
  bridges.push(bridge);
  bridge.registerTool({
    name: "act",
    description: "Has an effect: must run once per call.",
    parameters: { type: "object", properties: { run: { type: "integer" }, n: { type: "integer" } } },
    handler: async (args, ctx) => {
      // Call ids are unique within a session only.
      const key = `${index}/${ctx.id}`;
      handlerRuns[key] = (handlerRuns[key] ?? 0) + 1;
      // Finishing at different times puts cuts between a handler's end and its answer's arrival.
      await new Promise((resolve) => setTimeout(resolve, Math.floor(Math.random() * 4)));
      return { run: args.run, n: args.n };
    },
  });
  bridge.on("toolResult", (e) => (results[`${index}/${e.id}`] ??= []).push(e.status));
  bridge.on("resumed", (e) => {
    counts.resumed += 1;
    if (e.gap) counts.gap += 1;
  });
  bridge.on("reset", () => (counts.reset += 1));
  if (process.env.CHAOS_DEBUG) {
    const t0 = Date.now();
    bridge.on("status", (e) => console.error(Date.now() - t0, index, "status", JSON.stringify(e)));
    bridge.on("message", (e) => console.error(Date.now() - t0, index, "<-", e.type, e.seq ?? "", e.id ?? e.nonce ?? ""));
  }
  bridge.on("status", (e) => {
    if (e.status === "reconnecting" && e.delayMs !== undefined) counts.reconnecting += 1;
  });
  bridge.on("error", (e) => counts.errors.push(e.code));
  for (let run = 0; run < runs; run += 1) {
    const done = new Promise((resolve) => {
      const off = bridge.on("runComplete", (e) => {
        off();
        resolve(e);
      });
    });
    bridge.send(`run ${run}`);
    const complete = await done;
    completes.push(complete.reason);
  }
  bridge.bye();
}

const deadline = setTimeout(() => {
  const state = bridges.map((b) => ({ status: b.status, lastSeq: b.lastSeq, run: b.runId, unacknowledged: b.unacknowledged, outgoing: b.outgoing, sync: b.syncNonce, calls: [...b.calls.keys()] }));
  console.log(JSON.stringify({ timedOut: true, handlerRuns, results, completes, counts, state }));
  process.exit(2);
}, Number(process.env.CHAOS_DRIVER_TIMEOUT_MS ?? 150_000));
await Promise.all(Array.from({ length: sessions }, (_, i) => session(i)));
clearTimeout(deadline);
console.log(JSON.stringify({ timedOut: false, handlerRuns, results, completes, counts }));
