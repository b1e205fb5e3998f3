// The demo chat: the SDK from /sdk, the standard browser tools, and the conversation drawn from
// the SDK's transcript (`bridge.messages`, redrawn on `change`) rather than rebuilt from events.

import { AgentBridge, CATALOG, fetchTicket, fromWire, registerBrowserTools } from "/sdk/index.js";

const $ = (selector) => document.querySelector(selector);
const log = $("#log");
const statusBadge = $("#status");
const prompt = $("#prompt");
const stopButton = $("#stop");
const tokenForm = $("#token-form");

// A server started with a token refuses the page (4401) until the person types it in the token
// field. It is never read from the URL (where it would end up in history, logs and read_page);
// it stays in this page's memory only, and every connection trades it for a single-use ticket.
// Until then the page connects without one (a ticket of `null`), as a server without a token wants.
let token = null;
let tokenRefused = false;

async function ticket() {
  if (token === null) return null;
  try {
    return await fetchTicket(location.origin, { headers: { authorization: `Bearer ${token}` } });
  } catch (error) {
    if (error.status === 401) {
      // Asking again with the same credentials cannot help: wait for the person instead.
      askForToken("The server refused that token.");
      bridge.close();
    }
    throw error;
  }
}

// The session id is the SDK's own, one per tab: a reload resumes it, a second tab gets another.
const bridge = new AgentBridge(location.origin, { ticket, clientName: "agent-bridge-demo" });
registerBrowserTools(bridge, {
  exclude: ["get_selection"],
  confirm: askInTheChat,
  textRoot: () => $("#page-content"),
});
bridge.registerTool(fromWire(CATALOG.get_selection, () => ({ text: wellFormed(selectedText() || lastSelection) })));
window.demo = { bridge };

function askForToken(problem) {
  tokenRefused = true;
  token = null;
  $("#token-problem").textContent = problem;
  tokenForm.hidden = false;
  $("#token").focus();
}

tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("#token").value;
  $("#token").value = "";
  tokenRefused = false;
  tokenForm.hidden = true;
  bridge.connect();
});

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
  closed: (e) => (tokenRefused ? "not connected: the server needs a valid access token" : closedWords[e.code] ?? "disconnected"),
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
  // Credentials wanted: none were given yet, or a ticket was refused twice.
  if (event.status === "closed" && event.code === 4401 && !tokenRefused) {
    askForToken(token === null ? "This server needs an access token." : "The server refused the token.");
  }
  // One line in the log per lost connection, not one per failed attempt while the server is down.
  if (wasOpen && event.status !== "open") note("connection lost", "notice disconnected");
  wasOpen = event.status === "open";
});

bridge.on("ready", (ready) => {
  if (!ready.resumed) note("connected to the agent", "notice connected");
  renderTools();
});

bridge.on("resumed", (resumed) => {
  // With a gap the snapshot that follows rebuilds the conversation and says so.
  if (!resumed.gap) note("reconnected: the conversation continues where it was", "notice resumed");
});

bridge.on("snapshot", (snapshot) => {
  note(snapshot.turns.length ? "conversation restored" : "session restored", "notice resumed");
});

bridge.on("reset", () => note("conversation reset: the server no longer had it, so a new one began", "notice reset"));

// Refusals of an approval answer or a cancel are shown on the card they concern; the reset notice
// tells session_expired in words; the status line tells a missing ticket.
const shownElsewhere = new Set(["session_expired", "invalid_arguments", "unknown_approval", "unknown_call", "client_ticket_failed"]);

bridge.on("error", (error) => {
  if (shownElsewhere.has(error.code)) return;
  note(`Something went wrong: ${error.message}`, "notice error").dataset.code = error.code;
});
bridge.on("toolsUpdated", renderTools);

// Tools that wait for the person: their running call reads "waiting for you".
let interactive = new Set();

function renderTools() {
  interactive = new Set(bridge.definitions().filter((tool) => tool.interactive).map((tool) => tool.name));
  const rejected = new Map(bridge.rejectedTools.map((r) => [r.name, r]));
  $("#tools").replaceChildren(
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

// One element per turn and per tool call, kept across changes, so a card someone is editing or
// answering is never redrawn under their hands. Notices stay where they were written, between
// turns. The SDK gives a turn a new object only when it changed, so unchanged turns are skipped.
const turns = new Map(); // turn id -> { view, turn }
const cards = new Map(); // call id -> card element
const confirms = new Map(); // call id -> the confirm tool's question, while it waits
const drawn = new WeakMap(); // element -> what it was last drawn from, to skip redrawing it

bridge.on("change", ({ messages }) => {
  const ids = new Set(messages.map((turn) => turn.id));
  for (const [id, { view }] of turns) {
    if (ids.has(id)) continue;
    view.remove();
    turns.delete(id);
  }
  messages.forEach((turn, index) => {
    let entry = turns.get(turn.id);
    if (!entry) {
      entry = { view: el("div", { class: `message ${turn.role}` }), turn: null };
      turns.set(turn.id, entry);
      // Before the next turn already shown (a run's answer goes above messages queued behind
      // it), else at the end.
      const next = messages.slice(index + 1).find((later) => turns.has(later.id));
      log.insertBefore(entry.view, next ? turns.get(next.id).view : null);
    }
    if (entry.turn === turn) return;
    entry.turn = turn;
    if (turn.role === "user") drawUser(entry.view, turn);
    else drawAssistant(entry.view, turn);
  });
  for (const [id, card] of cards) if (!card.isConnected) cards.delete(id);
  stopButton.disabled = !messages.some((turn) => turn.role === "assistant" && turn.status === "streaming");
  scrollDown();
});

function drawUser(view, turn) {
  view.textContent = turn.text;
  view.dataset.status = turn.status;
  view.title = turn.status === "dropped" ? "Not sent: the run was stopped, or the conversation was reset." : "";
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

function drawAssistant(view, turn) {
  view.dataset.run = turn.runId;
  const texts = (view.texts ??= []);
  const nodes = turn.parts.map((part, index) => {
    if (part.type === "tool") return drawCard(part);
    // The same span for the same part, so a selection in earlier text survives new tokens.
    const span = (texts[index] ??= el("span", { class: "text" }));
    if (span.textContent !== part.text) span.textContent = part.text;
    return span;
  });
  // The model's step is being made again: what it wrote in that step is already gone.
  if (turn.retry) nodes.push((view.retry ??= el("div", { class: "retry" }, "reconnecting to the model…")));
  if (turn.reason) {
    view.dataset.reason = turn.reason;
    const steps = turn.steps === 1 ? "1 model step" : `${turn.steps} model steps`;
    nodes.push((view.end ??= el("div", { class: "run-end", "data-reason": turn.reason, title: steps }, runEndWords[turn.reason] ?? "run ended")));
  }
  patch(view, nodes);
}

function drawCard(part) {
  let card = cards.get(part.id);
  if (!card) {
    card = el(
      "div",
      { class: "tool-call", "data-id": part.id, "data-name": part.name },
      el("div", { class: "head" }, el("span", { class: "tool-name" }, part.name), el("span", { class: "tool-status" })),
      el("div", { class: "arguments" }),
      el("div", { class: "result" }),
    );
    cards.set(part.id, card);
  }
  const [state, label, words] = describe(part);
  card.dataset.status = state;
  card.querySelector(".tool-status").textContent = label;
  if (part.source) card.dataset.source = part.source;
  if (Object.keys(part.arguments).length > 0) {
    redraw(card.querySelector(".arguments"), pretty(part.arguments), (shown, text) =>
      shown.replaceChildren(el("span", { class: "label" }, "arguments"), el("pre", {}, text)),
    );
  }
  const open = part.approval && (part.approvalState === "open" || part.approvalState === "answering");
  const panel = card.querySelector(".approval");
  if (open && !panel) card.append(approvalPanel(part.approval));
  if (!open) panel?.remove();
  const question = confirms.get(part.id);
  if (question && question.parentElement !== card) card.append(question);
  const cancel = card.querySelector(".cancel-call");
  if ((state === "running" || state === "pending") && !cancel) card.querySelector(".head").append(cancelButton(part.id));
  else if (state !== "running" && state !== "pending") cancel?.remove();
  if (words !== undefined) {
    const body = part.status === "ok" ? part.result : part.error;
    redraw(card.querySelector(".result"), `${part.status}\n${pretty(body)}`, (shown) =>
      shown.replaceChildren(
        ...(words ? [el("p", { class: "outcome" }, words)] : []),
        el("span", { class: "label" }, part.status === "ok" ? "result" : "error"),
        el("pre", {}, pretty(body)),
      ),
    );
  }
  return card;
}

// [data-status, the label a person reads, and once it is over the outcome in a sentence (or "")].
function describe(part) {
  const why = `${part.cancelReason ?? ""} ${part.error ?? ""}`;
  switch (part.status) {
    case "pending":
      return part.cancelReason ? ["cancelled", cancelWords(why)[0]] : ["pending", "waiting"];
    case "awaiting_approval":
      return ["approval", "waiting for your approval"];
    case "running": {
      if (part.cancelReason) return ["cancelled", cancelWords(why)[0]];
      const progress = part.progress;
      if (progress) return ["running", progress.message ?? `${Math.round((progress.value ?? 0) * 100)}%`];
      return ["running", interactive.has(part.name) ? "waiting for you" : "running"];
    }
    case "cancelled":
      return ["cancelled", ...cancelWords(why)];
    case "denied":
      return ["denied", "denied", "This call was denied; the agent was told why."];
    case "approval_expired":
      return [
        "approval_expired",
        "approval expired",
        "Nobody approved or denied this call in time, so it did not run. The agent was told this was not a refusal.",
      ];
    default:
      return [part.status, part.status.replaceAll("_", " "), ""];
  }
}

function cancelWords(reason) {
  if (/by_user/.test(reason)) return ["cancelled by you", "You cancelled this call; the agent carries on without it."];
  if (/stopped/.test(reason)) return ["cancelled: run stopped", "The run was stopped before this call finished."];
  if (/disconnected|bye/.test(reason)) return ["cancelled: disconnected", "The page was away too long, so this call was cancelled."];
  if (/max_steps|step limit/.test(reason)) return ["cancelled: too many steps", "The agent reached its step limit, so this call was not run."];
  return ["cancelled", "This call was cancelled."];
}

// A running call can be cancelled on its own; the run goes on with the other results.
function cancelButton(id) {
  const button = el("button", { type: "button", class: "cancel-call", title: "Cancel this call only" }, "Cancel");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await bridge.cancelCall(id);
    } catch (error) {
      // Most likely it finished in the meantime; its result is on the card.
      button.remove();
      if (error.code !== "unknown_call") note(`could not cancel: ${error.message}`, "notice error");
    }
  });
  return button;
}

// Approvals: a panel on the call's card, so the rest of the page (Stop included) stays usable. ----

function approvalPanel(approval) {
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
  const approveWith = (remember) => {
    const options = remember ? { remember: "session" } : {};
    if (edit.open && editor.value.trim() !== original.trim()) {
      let value;
      try {
        value = JSON.parse(editor.value);
      } catch (error) {
        return fail(`The arguments are not valid JSON: ${error.message}`);
      }
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        return fail("The arguments must be a JSON object, like {\"key\": \"value\"}.");
      }
      options.arguments = value;
    }
    void answer(() => approval.approve(options));
  };
  approve.addEventListener("click", () => approveWith(false));
  always.addEventListener("click", () => approveWith(true));
  deny.addEventListener("click", () => void answer(() => approval.deny(denyReason.value.trim() || undefined)));
  return el(
    "div",
    { class: "approval", "data-id": approval.id, role: "group", "aria-label": `Approve ${approval.name}?` },
    el("p", { class: "approval-reason" }, `Approval needed: ${approval.reason}`),
    el("p", { class: "approval-expiry" }, `Answer by ${new Date(approval.expiresAt).toLocaleTimeString()}, or it will not run.`),
    edit,
    problem,
    denyReason,
    el("div", { class: "actions" }, ...buttons),
  );
}

// The confirm tool: a panel on its card, not a modal, so Stop and the rest of the page stay usable.
function askInTheChat(request, signal) {
  const approve = el("button", { type: "button", class: "confirm-approve primary" }, request.approveLabel);
  const deny = el("button", { type: "button", class: "confirm-deny" }, request.denyLabel);
  const panel = el(
    "div",
    { class: "confirm", role: "group", "aria-label": "The agent asks" },
    el("p", { class: "confirm-question" }, request.question),
    el("div", { class: "actions" }, approve, deny),
  );
  confirms.set(request.id, panel);
  // The card is drawn already (the transcript changes before a handler runs); if not, it picks
  // the question up from `confirms` when it is.
  cards.get(request.id)?.append(panel);
  scrollDown();
  return new Promise((resolve, reject) => {
    const done = (answer) => {
      confirms.delete(request.id);
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

// Sending ----------------------------------------------------------------------------------------

function submit(message) {
  const content = message.trim();
  // The turn shows up through `change`; the run's outcome is drawn from the transcript too.
  if (content) void bridge.send(content);
}

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  submit(prompt.value);
  prompt.value = "";
});

stopButton.addEventListener("click", () => bridge.stop());

for (const button of $("#suggestions").querySelectorAll("button")) {
  button.addEventListener("click", () => submit(button.textContent));
}

// Helpers ----------------------------------------------------------------------------------------

function note(message, className) {
  const line = el("div", { class: className }, message);
  log.append(line);
  scrollDown();
  return line;
}

// Children in this order, moving only what is out of place (a moved element loses focus).
function patch(parent, nodes) {
  nodes.forEach((node, index) => {
    if (parent.childNodes[index] !== node) parent.insertBefore(node, parent.childNodes[index] ?? null);
  });
  while (parent.childNodes.length > nodes.length) parent.lastChild.remove();
}

// Draws `node` again only when what it shows (`key`) changed.
function redraw(node, key, draw) {
  if (drawn.get(node) === key) return;
  drawn.set(node, key);
  draw(node, key);
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
