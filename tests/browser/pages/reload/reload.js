import { AgentBridge } from "/sdk/index.js";

// Counts live in localStorage so they survive the reload the test makes.
function started(name) {
  const counts = JSON.parse(localStorage.getItem("counts") || "{}");
  counts[name] = (counts[name] || 0) + 1;
  localStorage.setItem("counts", JSON.stringify(counts));
  show();
}
// Before the reload a handler never finishes: the reload is what interrupts it.
const hold = () => (sessionStorage.getItem("reloaded") ? Promise.resolve() : new Promise(() => {}));

function show() {
  document.getElementById("counts").textContent = localStorage.getItem("counts") || "{}";
  document.getElementById("completed").textContent = window.completed.join(",");
}

window.results = [];
window.completed = [];
window.resumedEvents = [];
const bridge = new AgentBridge(`ws://${location.host}`, { sessionId: "reload-page" });
bridge.registerTool({
  name: "slow_read", readOnly: true, parameters: { type: "object" },
  handler: async () => { started("slow_read"); await hold(); return { read: true }; },
});
bridge.registerTool({
  name: "slow_write", parameters: { type: "object" },
  handler: async () => { started("slow_write"); await hold(); return { written: true }; },
});
bridge.on("toolResult", (e) => window.results.push({ name: e.name, status: e.status }));
bridge.on("runComplete", (e) => { window.completed.push(e.reason); show(); });
bridge.on("resumed", (e) => window.resumedEvents.push(e));
bridge.on("status", (e) => { document.getElementById("status").textContent = e.status; });
window.bridge = bridge;
show();
