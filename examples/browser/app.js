// The demo chat: the SDK from /sdk, the standard browser tools, and a view of every event.

import { AgentBridge, registerBrowserTools } from "/sdk/index.js";

const $ = (selector) => document.querySelector(selector);
const log = $("#log");
const statusBadge = $("#status");
const prompt = $("#prompt");
const stopButton = $("#stop");

// One session per tab: a reload resumes it (the SDK keeps what it needs in sessionStorage), a
// second tab gets its own instead of replacing this one.
const sessionKey = "agent-bridge-demo-session";
const sessionId = sessionStorage.getItem(sessionKey) ?? crypto.randomUUID();
sessionStorage.setItem(sessionKey, sessionId);
const token = new URLSearchParams(location.search).get("token") ?? undefined;

const bridge = new AgentBridge(location.origin, { sessionId, token, clientName: "agent-bridge-demo" });
registerBrowserTools(bridge, {
  confirm: askInDialog,
  textRoot: () => $("#page-content"),
});
window.demo = { bridge };

// Connection state -------------------------------------------------------------------------------

const statusText = {
  idle: () => "not connected",
  connecting: () => "connecting…",
  open: () => "connected",
  reconnecting: (e) => {
    if (e.delayMs === undefined) return "reconnecting…";
    if (e.delayMs === 0) return "connection lost, reconnecting…";
    return `disconnected${e.code ? ` (${e.code})` : ""}, retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s`;
  },
  closed: (e) => `disconnected${e.code ? ` (${e.code}${e.reason ? `: ${e.reason}` : ""})` : ""}`,
};

let wasOpen = false;
bridge.on("status", (event) => {
  statusBadge.dataset.state = event.status;
  statusBadge.textContent = statusText[event.status](event);
  // One line in the log per lost connection, not one per failed attempt while the server is down.
  if (wasOpen && event.status !== "open") {
    note(`connection lost${event.code ? ` (close code ${event.code})` : ""}`, "notice disconnected");
  }
  wasOpen = event.status === "open";
});

bridge.on("ready", (ready) => {
  if (!ready.resumed) note(`connected to session ${ready.session_id}`, "notice connected");
  renderTools();
});

bridge.on("resumed", (resumed) => {
  // With a gap the snapshot that follows rebuilds the log and says so.
  if (!resumed.gap) note("reconnected: the conversation continues where it was", "notice resumed");
});

bridge.on("reset", () => {
  note("the server no longer had this conversation: starting a new one", "notice reset");
  stopButton.disabled = true;
});

bridge.on("error", (error) => {
  // Told in plain words by the reset notice.
  if (error.code !== "session_expired") note(`error ${error.code}: ${error.message}`, "notice error");
});
bridge.on("toolsUpdated", renderTools);

function renderTools() {
  const rejected = new Map(bridge.rejectedTools.map((r) => [r.name, r]));
  const list = $("#tools");
  list.replaceChildren(
    ...bridge.toolNames.map((name) => {
      const item = el("li", { "data-tool": name }, el("code", {}, name));
      const refusal = rejected.get(name);
      if (refusal) {
        item.classList.add("rejected");
        item.append(el("span", { class: "reason" }, ` rejected: ${refusal.reason}`));
      }
      return item;
    }),
  );
}

// The conversation -------------------------------------------------------------------------------

let turn = null; // the assistant's bubble for the run in progress
let text = null; // where the next tokens go inside it

function startTurn(runId) {
  turn = el("div", { class: "message assistant", "data-run": runId });
  text = null;
  log.append(turn);
  return turn;
}

function turnFor(runId) {
  return log.querySelector(`.assistant[data-run="${CSS.escape(runId)}"]`) ?? startTurn(runId);
}

bridge.on("runStart", (event) => {
  startTurn(event.run_id);
  stopButton.disabled = false;
});

bridge.on("token", (event) => {
  const bubble = turnFor(event.run_id);
  bubble.querySelector(".retry")?.remove();
  if (!text || text.parentElement !== bubble) {
    text = el("span", { class: "text" });
    bubble.append(text);
  }
  text.textContent += event.content;
  scrollDown();
});

// The model's step is being made again: what it wrote so far in this step no longer stands.
bridge.on("stepRetry", (event) => {
  const bubble = turnFor(event.run_id);
  const cards = bubble.querySelectorAll(".tool-call");
  const boundary = cards[cards.length - 1] ?? null;
  for (const span of bubble.querySelectorAll(".text")) {
    if (!boundary || boundary.compareDocumentPosition(span) & Node.DOCUMENT_POSITION_FOLLOWING) span.remove();
  }
  text = null;
  if (!bubble.querySelector(".retry")) bubble.append(el("div", { class: "retry" }, "reconnecting to the model…"));
});

// After a reload (or a gap too long to replay) the server sends the conversation: rebuild the log.
bridge.on("snapshot", (snapshot) => {
  log.replaceChildren();
  turn = text = null;
  for (const item of snapshot.turns ?? []) {
    if (item.role === "user") {
      log.append(el("div", { class: "message user" }, item.content));
      continue;
    }
    const bubble = item.run_id ? turnFor(item.run_id) : startTurn("");
    if (item.content) bubble.append(el("span", { class: "text" }, item.content));
    for (const call of item.tool_calls ?? []) {
      const card = cardFor(call.id, call.name, item.run_id ?? "", call.arguments ?? {});
      if (call.status === "pending" || call.status === undefined) setStatus(card, "waiting", "running");
      else showResult(card, call.status, call.status === "ok" ? call.result : call.error);
    }
    text = null;
  }
  if (snapshot.run) {
    const bubble = turnFor(snapshot.run.run_id);
    if (snapshot.run.content) {
      text = el("span", { class: "text" }, snapshot.run.content);
      bubble.append(text);
    }
  }
  stopButton.disabled = !snapshot.run;
  note(snapshot.turns?.length ? "conversation restored" : "session restored", "notice resumed");
});

bridge.on("toolRequest", (request) => {
  const card = cardFor(request.id, request.name, request.run_id, request.arguments);
  setStatus(card, request.interactive ? "waiting for you" : "running", "running");
});

bridge.on("toolProgress", (event) => {
  const card = log.querySelector(`.tool-call[data-id="${CSS.escape(event.id)}"]`);
  if (card) setStatus(card, event.message ?? `${Math.round((event.progress ?? 0) * 100)}%`, "running");
});

bridge.on("toolResult", (result) => {
  const card = cardFor(result.id, result.name, result.run_id, null);
  showResult(card, result.status, result.status === "ok" ? result.result : result.error ?? result.result);
  card.dataset.source = result.source;
});

const statusLabel = { outcome_unknown: "outcome unknown", timed_out: "timed out", invalid_arguments: "invalid arguments" };

function showResult(card, status, body) {
  setStatus(card, statusLabel[status] ?? status, status);
  card.querySelector(".result").replaceChildren(
    el("span", { class: "label" }, status === "ok" ? "result" : "error"),
    el("pre", {}, pretty(body)),
  );
}

bridge.on("runComplete", (event) => {
  const bubble = turnFor(event.run_id);
  const steps = event.steps === 1 ? "1 step" : `${event.steps} steps`;
  bubble.append(el("div", { class: "run-end", "data-reason": event.reason }, `run ${event.reason} · ${steps}`));
  bubble.dataset.reason = event.reason;
  if (bridge.runId === null) stopButton.disabled = true;
  turn = text = null;
  scrollDown();
});

function cardFor(id, name, runId, args) {
  let card = log.querySelector(`.tool-call[data-id="${CSS.escape(id)}"]`);
  if (!card) {
    card = el(
      "div",
      { class: "tool-call", "data-id": id, "data-name": name },
      el("div", { class: "head" }, el("span", { class: "tool-name" }, name), el("span", { class: "tool-status" })),
      el("div", { class: "arguments" }),
      el("div", { class: "result" }),
    );
    turnFor(runId).append(card);
    text = null; // tokens after a tool call start a new paragraph below it
  }
  if (args !== null) {
    card.querySelector(".arguments").replaceChildren(el("span", { class: "label" }, "arguments"), el("pre", {}, pretty(args)));
  }
  scrollDown();
  return card;
}

function setStatus(card, label, state) {
  card.dataset.status = state;
  card.querySelector(".tool-status").textContent = label;
}

// Sending ----------------------------------------------------------------------------------------

function submit(message) {
  const content = message.trim();
  if (!content) return;
  log.append(el("div", { class: "message user" }, content));
  bridge.send(content);
  scrollDown();
}

$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  submit(prompt.value);
  prompt.value = "";
});

stopButton.addEventListener("click", () => bridge.stop());

for (const button of $("#suggestions").querySelectorAll("button")) {
  button.addEventListener("click", () => submit(button.textContent));
}

// The confirm tool's dialog ----------------------------------------------------------------------

function askInDialog(request, signal) {
  const dialog = $("#confirm-dialog");
  $("#confirm-question").textContent = request.question;
  const approve = $("#confirm-approve");
  const deny = $("#confirm-deny");
  approve.textContent = request.approveLabel;
  deny.textContent = request.denyLabel;
  dialog.dataset.callId = request.id;
  return new Promise((resolve, reject) => {
    const done = (answer) => {
      approve.onclick = deny.onclick = dialog.oncancel = null;
      dialog.close();
      if (answer === null) reject(signal.reason);
      else resolve(answer);
    };
    approve.onclick = () => done(true);
    deny.onclick = () => done(false);
    dialog.oncancel = (event) => {
      event.preventDefault();
      done(false);
    };
    // Stopped or disconnected while the person was deciding: the question is moot.
    signal.addEventListener("abort", () => done(null), { once: true });
    dialog.showModal();
  });
}

// Helpers ----------------------------------------------------------------------------------------

function note(message, className) {
  log.append(el("div", { class: className }, message));
  scrollDown();
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function scrollDown() {
  log.scrollTop = log.scrollHeight;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}
