// The demo chat: the SDK from /sdk, the standard browser tools, and a view of every event.

import { AgentBridge, CATALOG, fromWire, registerBrowserTools } from "/sdk/index.js";

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
  exclude: ["get_selection"],
  confirm: askInTheChat,
  textRoot: () => $("#page-content"),
});
bridge.registerTool(fromWire(CATALOG.get_selection, () => ({ text: wellFormed(selectedText() || lastSelection) })));
window.demo = { bridge };

// get_selection ----------------------------------------------------------------------------------

// Clicking into the prompt to ask "what did I select?" moves the selection into the prompt, so the
// page remembers the last non-empty selection made anywhere else and get_selection answers that.
const composer = $("#composer");
let lastSelection = "";

function selectedText() {
  const selection = document.getSelection();
  if (!selection || selection.isCollapsed || selection.rangeCount === 0) return "";
  if (selection.anchorNode && composer.contains(selection.anchorNode)) return "";
  return selection.toString();
}

document.addEventListener("selectionchange", () => {
  const text = selectedText();
  if (text.trim()) lastSelection = text;
});

function wellFormed(text) {
  return typeof text.toWellFormed === "function" ? text.toWellFormed() : text;
}

// Connection state -------------------------------------------------------------------------------

// What a person reads: no close codes, no protocol words. The codes stay on data-code for tests
// and for whoever opens the developer tools.
const statusText = {
  idle: () => "not connected",
  connecting: () => "connecting…",
  open: () => "connected",
  reconnecting: (e) => {
    if (!e.delayMs) return "connection lost, reconnecting…";
    const seconds = Math.max(1, Math.round(e.delayMs / 1000));
    return `disconnected, trying again in ${seconds} s (attempt ${e.attempt})`;
  },
  closed: (e) => closedWords[e.code] ?? "disconnected",
};

// Why a connection ended for good, by the server's close code.
const closedWords = {
  1008: "disconnected: the server refused this page",
  1009: "disconnected: a message was too large for the server",
  4401: "not connected: the server needs a valid access token",
  4403: "not connected: this page's address is not allowed by the server",
  4409: "disconnected: this conversation was opened in another tab",
  4429: "not connected: too many connections, try again in a minute",
};

let wasOpen = false;
bridge.on("status", (event) => {
  statusBadge.dataset.state = event.status;
  if (event.code) statusBadge.dataset.code = String(event.code);
  else delete statusBadge.dataset.code;
  statusBadge.textContent = statusText[event.status](event);
  // One line in the log per lost connection, not one per failed attempt while the server is down.
  if (wasOpen && event.status !== "open") note("connection lost", "notice disconnected");
  wasOpen = event.status === "open";
});

bridge.on("ready", (ready) => {
  if (!ready.resumed) note("connected to the agent", "notice connected");
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

// Refusals of an approval answer or a cancel are shown on the card they concern.
const shownOnCards = new Set(["session_expired", "invalid_arguments", "unknown_approval", "unknown_call"]);

bridge.on("error", (error) => {
  // session_expired is told in plain words by the reset notice; the code stays out of the text.
  if (shownOnCards.has(error.code)) return;
  note(`Something went wrong: ${error.message}`, "notice error").dataset.code = error.code;
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
  const asking = new Set(snapshot.pending_approvals ?? []);
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
      if (asking.has(call.id)) {
        setStatus(card, "waiting for your approval", "approval");
      } else if (call.status === "pending" || call.status === undefined) {
        setStatus(card, "waiting", "running");
        addCancel(card);
      } else {
        showResult(card, call.status, call.status === "ok" ? call.result : call.error);
      }
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
  // Questions this page was already showing (a reconnect, not a reload) are not asked again.
  for (const approval of bridge.pendingApprovals) showApproval(approval);
  stopButton.disabled = !snapshot.run;
  note(snapshot.turns?.length ? "conversation restored" : "session restored", "notice resumed");
});

bridge.on("toolRequest", (request) => {
  const card = cardFor(request.id, request.name, request.run_id, request.arguments);
  card.querySelector(".approval")?.remove();
  setStatus(card, request.interactive ? "waiting for you" : "running", "running");
  addCancel(card);
});

bridge.on("toolCancel", (event) => {
  const card = log.querySelector(`.tool-call[data-id="${CSS.escape(event.id)}"]`);
  if (!card) return;
  card.querySelector(".cancel-call")?.remove();
  // The tool_result with the model's side of it follows; until then say what happened.
  setStatus(card, cancelWords(event.reason).label, "cancelled");
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

const statusLabel = {
  outcome_unknown: "outcome unknown",
  timed_out: "timed out",
  invalid_arguments: "invalid arguments",
  approval_expired: "approval expired",
};

// What a person should read for the outcomes that are not the tool's own answer.
function explain(status, body) {
  const detail = typeof body === "string" ? body : "";
  if (status === "approval_expired") {
    return {
      label: "approval expired",
      text: "Nobody approved or denied this call in time, so it did not run. The agent was told this was not a refusal.",
    };
  }
  if (status === "cancelled") return cancelWords(detail);
  if (status === "denied") return { label: "denied", text: "This call was denied; the agent was told why." };
  return null;
}

function cancelWords(reason) {
  if (/by_user/.test(reason)) return { label: "cancelled by you", text: "You cancelled this call; the agent carries on without it." };
  if (/stopped/.test(reason)) return { label: "cancelled: run stopped", text: "The run was stopped before this call finished." };
  if (/disconnected|bye/.test(reason)) return { label: "cancelled: disconnected", text: "The page was away too long, so this call was cancelled." };
  if (/max_steps|step limit/.test(reason)) return { label: "cancelled: too many steps", text: "The agent reached its step limit, so this call was not run." };
  return { label: "cancelled", text: "This call was cancelled." };
}

function showResult(card, status, body) {
  const words = explain(status, body);
  setStatus(card, words?.label ?? statusLabel[status] ?? status, status);
  card.querySelector(".approval")?.remove();
  card.querySelector(".cancel-call")?.remove();
  const parts = [];
  if (words) parts.push(el("p", { class: "outcome" }, words.text));
  parts.push(el("span", { class: "label" }, status === "ok" ? "result" : "error"), el("pre", {}, pretty(body)));
  card.querySelector(".result").replaceChildren(...parts);
}

// Approvals: a card inline in the chat, so the rest of the page (Stop included) stays usable. ----

bridge.on("approvalRequest", showApproval);

bridge.on("approvalSettled", (event) => {
  // Answered, expired or cancelled: the toolRequest or toolResult that comes with it says which.
  log.querySelector(`.approval[data-id="${CSS.escape(event.id)}"]`)?.remove();
});

function showApproval(approval) {
  const card = cardFor(approval.id, approval.name, approval.runId, approval.arguments);
  if (card.querySelector(".approval")) return;
  setStatus(card, "waiting for your approval", "approval");
  const original = JSON.stringify(approval.arguments, null, 2);
  const editor = el("textarea", { class: "approval-arguments", rows: "5", spellcheck: "false", "aria-label": "Arguments as JSON" });
  editor.value = original;
  const edit = el("details", { class: "approval-edit" }, el("summary", {}, "Edit the arguments"), editor);
  const problem = el("p", { class: "approval-error", role: "alert", hidden: "" });
  const denyReason = el("input", { class: "deny-reason", placeholder: "Why not? (optional, the agent is told)", "aria-label": "Reason for denying" });
  const approve = el("button", { type: "button", class: "approve primary" }, "Approve");
  const always = el("button", { type: "button", class: "always", title: `Run ${approval.name} without asking for the rest of this session` }, "Always for this session");
  const deny = el("button", { type: "button", class: "deny" }, "Deny");
  const buttons = [approve, always, deny];
  const panel = el(
    "div",
    { class: "approval", "data-id": approval.id, role: "group", "aria-label": `Approve ${approval.name}?` },
    el("p", { class: "approval-reason" }, `Approval needed: ${approval.reason}`),
    el("p", { class: "approval-expiry" }, `Answer by ${new Date(approval.expiresAt).toLocaleTimeString()}, or it will not run.`),
    edit,
    problem,
    denyReason,
    el("div", { class: "actions" }, ...buttons),
  );
  card.append(panel);

  const fail = (message) => {
    problem.textContent = message;
    problem.hidden = false;
    editor.setAttribute("aria-invalid", "true");
  };
  const answer = async (send) => {
    problem.hidden = true;
    editor.removeAttribute("aria-invalid");
    for (const button of buttons) button.disabled = true;
    try {
      await send();
    } catch (error) {
      if (error.code === "invalid_arguments") {
        edit.open = true;
        fail(`The server refused these arguments: ${error.message}`);
      } else if (error.code === "unknown_approval") {
        fail("This request is no longer open (it expired, was cancelled, or was answered already).");
      } else {
        fail(`Could not send the answer: ${error.message}`);
      }
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  };
  // Edited arguments go with an approval only when the person changed them.
  const edited = () => {
    if (!edit.open || editor.value.trim() === original.trim()) return { ok: true, value: undefined };
    let value;
    try {
      value = JSON.parse(editor.value);
    } catch (error) {
      return { ok: false, message: `The arguments are not valid JSON: ${error.message}` };
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return { ok: false, message: "The arguments must be a JSON object, like {\"key\": \"value\"}." };
    }
    return { ok: true, value };
  };
  const approveWith = (remember) => {
    const args = edited();
    if (!args.ok) {
      edit.open = true;
      fail(args.message);
      return;
    }
    const options = {};
    if (args.value !== undefined) options.arguments = args.value;
    if (remember) options.remember = "session";
    void answer(() => approval.approve(options));
  };
  approve.addEventListener("click", () => approveWith(false));
  always.addEventListener("click", () => approveWith(true));
  deny.addEventListener("click", () => void answer(() => approval.deny(denyReason.value.trim() || undefined)));
  scrollDown();
}

// A running call can be cancelled on its own; the run goes on with the other results.
function addCancel(card) {
  if (card.querySelector(".cancel-call")) return;
  const button = el("button", { type: "button", class: "cancel-call", title: "Cancel this call only" }, "Cancel");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await bridge.cancelCall(card.dataset.id);
    } catch (error) {
      // Most likely it finished in the meantime; its result is on the card.
      button.remove();
      if (error.code !== "unknown_call") note(`could not cancel: ${error.message}`, "notice error");
    }
  });
  card.querySelector(".head").append(button);
}

// How a run ended, in words (the reason itself stays on data-reason; steps are no one's business
// but the developer's, so they go in the tooltip).
const runEndWords = {
  done: "done",
  stopped: "run stopped",
  error: "the run failed",
  disconnected: "the run ended: the page was away too long",
  tool_budget: "run ended: it used up its tool calls",
  max_steps: "run ended: step limit reached",
};

bridge.on("runComplete", (event) => {
  const bubble = turnFor(event.run_id);
  const ended = runEndWords[event.reason] ?? "run ended";
  const steps = event.steps === 1 ? "1 model step" : `${event.steps} model steps`;
  bubble.append(el("div", { class: "run-end", "data-reason": event.reason, title: steps }, ended));
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

// The confirm tool: a card in the chat, not a modal, so Stop and the rest of the page stay usable.

function askInTheChat(request, signal) {
  const card = cardFor(request.id, "confirm", bridge.runId ?? "", null);
  const approve = el("button", { type: "button", class: "confirm-approve primary" }, request.approveLabel);
  const deny = el("button", { type: "button", class: "confirm-deny" }, request.denyLabel);
  const panel = el(
    "div",
    { class: "confirm", role: "group", "aria-label": "The agent asks" },
    el("p", { class: "confirm-question" }, request.question),
    el("div", { class: "actions" }, approve, deny),
  );
  card.querySelector(".confirm")?.remove();
  card.append(panel);
  scrollDown();
  return new Promise((resolve, reject) => {
    const done = (answer) => {
      panel.remove();
      if (answer === null) reject(signal.reason);
      else resolve(answer);
    };
    approve.addEventListener("click", () => done(true), { once: true });
    deny.addEventListener("click", () => done(false), { once: true });
    // Stopped or disconnected while the person was deciding: the question is moot.
    signal.addEventListener("abort", () => done(null), { once: true });
  });
}

// Helpers ----------------------------------------------------------------------------------------

function note(message, className) {
  const line = el("div", { class: className }, message);
  log.append(line);
  scrollDown();
  return line;
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
