// The conversation as a page shows it, kept current from the wire events: user turns and
// assistant turns made of text and tool parts. Every change makes new objects for what changed
// (and a new array), so a view can compare by identity; what did not change keeps its object.

import type {
  CompleteReason,
  RunCompleteEvent,
  SnapshotEvent,
  ToolRequestEvent,
  ToolResultEvent,
  ToolResultStatus,
  ToolSource,
  TokenUsage,
} from "./events.js";
import type { ApprovalOutcome, ApprovalRequest, ApprovalState } from "./client.js";

/**
 * Where a tool call stands: `pending` (known, not started here: waiting to be dispatched, or
 * seen in a snapshot), `awaiting_approval` (a person must decide first), `running`, or its
 * terminal status.
 */
export type ToolPartStatus = "pending" | "awaiting_approval" | "running" | ToolResultStatus;

export interface TextPart {
  readonly type: "text";
  readonly text: string;
}

export interface ToolPart {
  readonly type: "tool";
  /** The call id (the same as in `toolRequest`, `toolResult`, `cancelCall`). */
  readonly id: string;
  readonly name: string;
  readonly arguments: Readonly<Record<string, unknown>>;
  readonly status: ToolPartStatus;
  /** The result, once the status is `ok`; otherwise null. */
  readonly result: unknown;
  /** Why it failed, for the statuses other than `ok`. */
  readonly error: string | null;
  /** Where it ran, once its result is in. */
  readonly source: ToolSource | null;
  /** The last `reportProgress` of its handler in this page. */
  readonly progress: { readonly value: number | null; readonly message: string | null } | null;
  /** The question to a person, while open and after (its `state` says how it ended). */
  readonly approval: ApprovalRequest | null;
  readonly approvalState: ApprovalState | null;
  /** The server's reason when it cancelled the call (`by_user`, `stopped`, ...). */
  readonly cancelReason: string | null;
}

export type AssistantPart = TextPart | ToolPart;

export interface UserTurn {
  readonly role: "user";
  readonly id: string;
  readonly text: string;
  /** The run that answers it, once it started. */
  readonly runId: string | null;
  /**
   * `queued` until its run starts (it waits for the connection, or behind the run in progress),
   * then `started`; `dropped` when it never will run (`stop()` dropped the queue, the server's
   * queue was full, or the session it was sent to is gone).
   */
  readonly status: "queued" | "started" | "dropped";
}

export interface AssistantTurn {
  readonly role: "assistant";
  /** The run's id. */
  readonly id: string;
  readonly runId: string;
  /** Text and tool calls in the order they came. */
  readonly parts: readonly AssistantPart[];
  /** All its text parts, joined. */
  readonly text: string;
  readonly status: "streaming" | "complete";
  /** How the run ended; null while streaming, and for runs seen only in a snapshot. */
  readonly reason: CompleteReason | null;
  readonly steps: number | null;
  readonly usage: TokenUsage | null;
  /** The model's step is being made again (the text of the void attempt is gone). */
  readonly retry: { readonly step: number; readonly attempt: number; readonly reason: string } | null;
}

export type Turn = UserTurn | AssistantTurn;

export interface ChangeEvent {
  messages: readonly Turn[];
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type UserRecord = Mutable<UserTurn> & { view: UserTurn | null };
type ToolRecord = Mutable<ToolPart>;
type TextRecord = Mutable<TextPart>;
type AssistantRecord = Omit<Mutable<AssistantTurn>, "parts" | "text"> & {
  parts: (TextRecord | ToolRecord)[];
  view: AssistantTurn | null;
};
type TurnRecord = UserRecord | AssistantRecord;

const TERMINAL: ReadonlySet<string> = new Set<ToolResultStatus>([
  "ok",
  "error",
  "invalid_arguments",
  "denied",
  "timed_out",
  "cancelled",
  "outcome_unknown",
  "approval_expired",
]);

export class Transcript {
  private turns: TurnRecord[] = [];
  private view: readonly Turn[] | null = null;
  private users = 0;
  private readonly onChange: () => void;

  constructor(onChange: () => void) {
    this.onChange = onChange;
  }

  get messages(): readonly Turn[] {
    if (this.view === null) this.view = Object.freeze(this.turns.map(render));
    return this.view;
  }

  // User turns --------------------------------------------------------------------------------

  addUser(text: string): UserRecord {
    this.users += 1;
    const turn: UserRecord = { role: "user", id: `user-${this.users}`, text, runId: null, status: "queued", view: null };
    this.turns.push(turn);
    this.changed(turn);
    return turn;
  }

  drop(turn: UserRecord): void {
    if (turn.status !== "queued") return;
    turn.status = "dropped";
    this.changed(turn);
  }

  /** A run started: for `turn` (a message this page sent), or for one sent elsewhere. */
  started(runId: string, content: string, turn: UserRecord | null): void {
    let user = turn ?? this.userOf(runId);
    if (user === null) {
      this.users += 1;
      user = { role: "user", id: `user-${this.users}`, text: content, runId, status: "started", view: null };
      this.turns.push(user);
    }
    user.runId = runId;
    user.status = "started";
    this.changed(user);
    if (this.assistantOf(runId) === null) {
      // Right after the message it answers, ahead of messages still queued behind it.
      const at = this.turns.indexOf(user) + 1;
      this.turns.splice(at, 0, newAssistant(runId));
    }
    this.changed(null);
  }

  // Assistant turns ---------------------------------------------------------------------------

  token(runId: string, content: string): void {
    const turn = this.assistant(runId);
    const last = turn.parts[turn.parts.length - 1];
    if (last?.type === "text") last.text += content;
    else turn.parts.push({ type: "text", text: content });
    turn.retry = null;
    this.changed(turn);
  }

  /** The step is made again: its text so far (what came after the last tool call) is void. */
  stepRetry(runId: string, step: number, attempt: number, reason: string): void {
    const turn = this.assistant(runId);
    let keep = turn.parts.length;
    while (keep > 0 && turn.parts[keep - 1]!.type === "text") keep -= 1;
    turn.parts.length = keep;
    turn.retry = { step, attempt, reason };
    this.changed(turn);
  }

  toolRequest(event: ToolRequestEvent): void {
    const [turn, part] = this.tool(event.runId, event.id, event.name);
    part.arguments = event.arguments;
    if (!TERMINAL.has(part.status)) part.status = "running";
    this.changed(turn);
  }

  approvalRequest(approval: ApprovalRequest): void {
    const [turn, part] = this.tool(approval.runId, approval.id, approval.name);
    part.arguments = approval.arguments;
    part.approval = approval;
    part.approvalState = approval.state;
    if (!TERMINAL.has(part.status)) part.status = "awaiting_approval";
    this.changed(turn);
  }

  approvalState(id: string, state: ApprovalState): void {
    const found = this.find(id);
    if (!found) return;
    const [turn, part] = found;
    part.approvalState = state;
    if (part.status === "awaiting_approval" && isOutcome(state)) {
      part.status = state === "approved" ? "running" : "pending";
    }
    this.changed(turn);
  }

  progress(id: string, value: number | null, message: string | null): void {
    const found = this.find(id);
    if (!found) return;
    found[1].progress = { value, message };
    this.changed(found[0]);
  }

  cancelled(id: string, reason: string): void {
    const found = this.find(id);
    if (!found) return;
    found[1].cancelReason = reason;
    this.changed(found[0]);
  }

  toolResult(event: ToolResultEvent): void {
    const [turn, part] = this.tool(event.runId, event.id, event.name);
    part.status = event.status;
    part.result = event.status === "ok" ? event.result : null;
    part.error = event.status === "ok" ? null : event.error ?? describeResult(event.result);
    part.source = event.source;
    this.changed(turn);
  }

  complete(event: RunCompleteEvent): void {
    const turn = this.assistant(event.runId);
    turn.status = "complete";
    turn.reason = event.reason;
    turn.steps = event.steps;
    turn.usage = event.usage;
    turn.retry = null;
    this.changed(turn);
  }

  /** The run's outcome so far, for `send()`'s promise. */
  outcome(runId: string): { text: string; toolResults: ToolResultEvent[] } {
    const turn = this.assistantOf(runId);
    if (turn === null) return { text: "", toolResults: [] };
    const toolResults: ToolResultEvent[] = [];
    for (const part of turn.parts) {
      if (part.type !== "tool" || !TERMINAL.has(part.status)) continue;
      toolResults.push({
        id: part.id,
        runId,
        name: part.name,
        status: part.status as ToolResultStatus,
        source: part.source ?? "unknown",
        result: part.result,
        error: part.error,
      });
    }
    return { text: textOf(turn.parts), toolResults };
  }

  /** Whether a run is known here and over. */
  isComplete(runId: string): boolean {
    return this.assistantOf(runId)?.status === "complete";
  }

  // Whole conversation ------------------------------------------------------------------------

  /**
   * The server's account of the conversation replaces this page's; messages of this page still
   * queued stay at the end, and open approval requests keep their handles.
   */
  snapshot(snapshot: SnapshotEvent, approvals: ReadonlyMap<string, ApprovalRequest>, queued: readonly UserRecord[]): void {
    const turns: TurnRecord[] = [];
    const byRun = new Map<string, AssistantRecord>();
    const asking = new Set(snapshot.pendingApprovals);
    let anonymous = 0;
    for (const item of snapshot.turns) {
      if (item.role === "user") {
        const id = item.runId ? `user-${item.runId}` : `user-snapshot-${turns.length}`;
        turns.push({ role: "user", id, text: item.content, runId: item.runId, status: item.runId ? "started" : "queued", view: null });
        continue;
      }
      const runId = item.runId ?? `unknown-${(anonymous += 1)}`;
      let turn = byRun.get(runId);
      if (!turn) {
        turn = newAssistant(runId);
        turn.status = "complete";
        byRun.set(runId, turn);
        turns.push(turn);
      }
      if (item.content) turn.parts.push({ type: "text", text: item.content });
      for (const call of item.toolCalls) {
        const approval = approvals.get(call.id) ?? null;
        const status: ToolPartStatus =
          call.status !== "pending" ? call.status : asking.has(call.id) || approval?.state === "open" ? "awaiting_approval" : "pending";
        turn.parts.push({
          ...newTool(call.id, call.name),
          arguments: call.arguments,
          status,
          result: call.status === "ok" ? call.result : null,
          error: call.status === "ok" || call.status === "pending" ? null : call.error ?? describeResult(call.result),
          approval,
          approvalState: approval?.state ?? null,
        });
      }
    }
    if (snapshot.run) {
      let turn = byRun.get(snapshot.run.runId);
      if (!turn) {
        turn = newAssistant(snapshot.run.runId);
        turns.push(turn);
      }
      turn.status = "streaming";
      if (snapshot.run.content) turn.parts.push({ type: "text", text: snapshot.run.content });
    }
    for (const user of queued) {
      user.view = null;
      turns.push(user);
    }
    // A user turn the server holds but whose run has not begun is queued; one never reported
    // carries no run id and is kept as it came.
    this.turns = turns;
    this.changed(null);
  }

  /** The session is gone: so is the conversation; messages still queued go to the new one. */
  reset(queued: readonly UserRecord[]): void {
    this.turns = [...queued];
    this.changed(null);
  }

  // Internals ---------------------------------------------------------------------------------

  private changed(turn: TurnRecord | null): void {
    if (turn !== null) turn.view = null;
    this.view = null;
    this.onChange();
  }

  private userOf(runId: string): UserRecord | null {
    for (const turn of this.turns) if (turn.role === "user" && turn.runId === runId) return turn;
    return null;
  }

  private assistantOf(runId: string): AssistantRecord | null {
    for (let i = this.turns.length - 1; i >= 0; i -= 1) {
      const turn = this.turns[i]!;
      if (turn.role === "assistant" && turn.runId === runId) return turn;
    }
    return null;
  }

  /** The run's assistant turn, made (at the end) when the run was not seen to start. */
  private assistant(runId: string): AssistantRecord {
    const found = this.assistantOf(runId);
    if (found) return found;
    const turn = newAssistant(runId);
    this.turns.push(turn);
    return turn;
  }

  private find(id: string): [AssistantRecord, ToolRecord] | null {
    for (let i = this.turns.length - 1; i >= 0; i -= 1) {
      const turn = this.turns[i]!;
      if (turn.role !== "assistant") continue;
      for (const part of turn.parts) if (part.type === "tool" && part.id === id) return [turn, part];
    }
    return null;
  }

  private tool(runId: string, id: string, name: string): [AssistantRecord, ToolRecord] {
    const found = this.find(id);
    if (found) return found;
    const turn = this.assistant(runId);
    const part = newTool(id, name);
    turn.parts.push(part);
    return [turn, part];
  }
}

function newAssistant(runId: string): AssistantRecord {
  return { role: "assistant", id: runId, runId, parts: [], status: "streaming", reason: null, steps: null, usage: null, retry: null, view: null };
}

function newTool(id: string, name: string): ToolRecord {
  return {
    type: "tool",
    id,
    name,
    arguments: {},
    status: "pending",
    result: null,
    error: null,
    source: null,
    progress: null,
    approval: null,
    approvalState: null,
    cancelReason: null,
  };
}

function isOutcome(state: ApprovalState): state is ApprovalOutcome {
  return state !== "open" && state !== "answering";
}

function textOf(parts: readonly (TextRecord | ToolRecord)[]): string {
  let text = "";
  for (const part of parts) if (part.type === "text") text += part.text;
  return text;
}

function describeResult(result: unknown): string | null {
  if (result === null || result === undefined) return null;
  return typeof result === "string" ? result : JSON.stringify(result);
}

function render(turn: TurnRecord): Turn {
  if (turn.view !== null) return turn.view;
  let view: Turn;
  if (turn.role === "user") {
    view = Object.freeze({ role: "user", id: turn.id, text: turn.text, runId: turn.runId, status: turn.status });
  } else {
    const parts = Object.freeze(turn.parts.map((part) => Object.freeze({ ...part }) as AssistantPart));
    view = Object.freeze({
      role: "assistant",
      id: turn.id,
      runId: turn.runId,
      parts,
      text: textOf(turn.parts),
      status: turn.status,
      reason: turn.reason,
      steps: turn.steps,
      usage: turn.usage,
      retry: turn.retry,
    });
  }
  turn.view = view;
  return view;
}
