// What the app sees of the server's messages: camelCase objects, converted here at the edge, so
// the rest of the SDK and every app speak one casing. Only protocol field names are converted;
// tool arguments and results are the tool's own data and pass through untouched.

import type {
  CompleteMessage,
  ErrorCode,
  ErrorMessage,
  Limits,
  ReadyMessage,
  RejectedTool,
  Resumed,
  RunStartedMessage,
  SnapshotCall,
  SnapshotMessage,
  SnapshotTurn,
  StepRetryMessage,
  TokenMessage,
  ToolCancelMessage,
  ToolRequestMessage,
  ToolResultMessage,
  ToolsReport,
  ToolsUpdatedMessage,
  Usage,
} from "./protocol.js";

/** Codes of errors the client reports itself; the server's are `ErrorCode`. */
export type ClientErrorCode =
  | "client_connect_failed"
  | "client_invalid_frame"
  | "client_storage_failed"
  | "client_ticket_failed"
  | "client_closed"
  | "client_session_reset"
  | "client_stopped";

export type BridgeErrorCode = ErrorCode | ClientErrorCode;

/** How a run ended (`complete.reason`). */
export type CompleteReason = CompleteMessage["reason"];

/** A tool call's terminal status (`tool_result.status`). */
export type ToolResultStatus = ToolResultMessage["status"];

/** Where a call ran: in a page (`client`), in the server, or not known (it never ran). */
export type ToolSource = NonNullable<ToolResultMessage["source"]>;

/** The server's limits for this session (`ready.limits`). */
export interface BridgeLimits {
  maxMessageBytes: number;
  maxTools: number;
  maxSchemaBytes: number;
  maxToolTimeoutMs: number;
  defaultToolTimeoutMs: number;
  humanTimeoutMs: number;
  progressCapMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxSteps: number;
  resumeGraceMs: number;
}

export interface TokenUsage {
  promptTokens?: number;
  completionTokens?: number;
  totalTokens?: number;
}

/** What the server accepted of this page's tools; `rejected` carries its validation errors. */
export interface ToolsReportEvent {
  accepted: string[];
  rejected: RejectedTool[];
}

/** `ready.resumed`: the connection carried an existing session on. */
export interface ResumeInfo {
  fromSeq: number;
  pendingCalls: string[];
  pendingApprovals: string[];
  /** The server could not replay everything missed; a `snapshot` follows. */
  gap: boolean;
}

export interface ReadyEvent {
  sessionId: string;
  protocol: number;
  tools: ToolsReportEvent;
  serverTools: string[];
  limits: BridgeLimits;
  /** Set when the connection carried on an existing session; null for a fresh one. */
  resumed: ResumeInfo | null;
}

export interface SnapshotCallInfo {
  id: string;
  name: string;
  arguments: Record<string, unknown>;
  /** `pending` while the call waits for its result. */
  status: ToolResultStatus | "pending";
  result: unknown;
  error: string | null;
}

export interface SnapshotTurnInfo {
  role: "user" | "assistant";
  content: string;
  runId: string | null;
  toolCalls: SnapshotCallInfo[];
}

/** The conversation so far, sent when replay could not cover what was missed (e.g. after a reload). */
export interface SnapshotEvent {
  lastSeq: number;
  turns: SnapshotTurnInfo[];
  /** The run in progress and the text of its current step so far. */
  run: { runId: string; content: string } | null;
  pendingCalls: string[];
  pendingApprovals: string[];
}

export interface StepRetryEvent {
  runId: string;
  step: number;
  attempt: number;
  /** The `model_*` code of the failure that voided the attempt. */
  reason: string;
}

export interface ToolsUpdatedEvent {
  tools: ToolsReportEvent;
  removed: string[];
  active: string[];
}

export interface RunStartEvent {
  runId: string;
  /** The user message the run answers. */
  content: string;
}

export interface TokenEvent {
  runId: string;
  content: string;
}

export interface ToolRequestEvent {
  id: string;
  runId: string;
  name: string;
  arguments: Record<string, unknown>;
  timeoutMs: number;
  interactive: boolean;
  redelivered: boolean;
}

export interface ToolCancelEvent {
  id: string;
  /** The server's reason: `by_user`, `stopped`, `timed_out`, ... */
  reason: string;
}

export interface ToolResultEvent {
  id: string;
  runId: string;
  name: string;
  status: ToolResultStatus;
  source: ToolSource;
  result: unknown;
  error: string | null;
}

export interface RunCompleteEvent {
  runId: string;
  reason: CompleteReason;
  steps: number;
  usage: TokenUsage | null;
}

/** Errors from the server (`error` messages) and from the client itself (code `client_*`). */
export interface BridgeErrorEvent {
  code: BridgeErrorCode;
  message: string;
  /** The call the error is about, if any. */
  id: string | null;
  runId: string | null;
}

export function limitsFromWire(limits: Limits): BridgeLimits {
  return {
    maxMessageBytes: limits.max_message_bytes,
    maxTools: limits.max_tools,
    maxSchemaBytes: limits.max_schema_bytes,
    maxToolTimeoutMs: limits.max_tool_timeout_ms,
    defaultToolTimeoutMs: limits.default_tool_timeout_ms,
    humanTimeoutMs: limits.human_timeout_ms,
    progressCapMs: limits.progress_cap_ms,
    heartbeatIntervalMs: limits.heartbeat_interval_ms,
    heartbeatTimeoutMs: limits.heartbeat_timeout_ms,
    maxSteps: limits.max_steps,
    resumeGraceMs: limits.resume_grace_ms,
  };
}

function toolsReport(report: ToolsReport): ToolsReportEvent {
  return { accepted: [...report.accepted], rejected: [...report.rejected] };
}

export function resumeInfo(resumed: Resumed): ResumeInfo {
  return {
    fromSeq: resumed.from_seq,
    pendingCalls: [...(resumed.pending_calls ?? [])],
    pendingApprovals: [...(resumed.pending_approvals ?? [])],
    gap: resumed.gap ?? false,
  };
}

export function readyEvent(message: ReadyMessage): ReadyEvent {
  const event: ReadyEvent = {
    sessionId: message.session_id,
    protocol: message.protocol ?? 1,
    tools: toolsReport(message.tools),
    serverTools: [...(message.server_tools ?? [])],
    limits: limitsFromWire(message.limits),
    resumed: message.resumed ? resumeInfo(message.resumed) : null,
  };
  // The resume token is the client's business: it is never handed to the page's listeners.
  return event;
}

function snapshotCall(call: SnapshotCall): SnapshotCallInfo {
  const args = call.arguments;
  return {
    id: call.id,
    name: call.name,
    arguments: args !== null && typeof args === "object" && !Array.isArray(args) ? (args as Record<string, unknown>) : {},
    status: call.status ?? "pending",
    result: call.result ?? null,
    error: call.error ?? null,
  };
}

function snapshotTurn(turn: SnapshotTurn): SnapshotTurnInfo {
  const info: SnapshotTurnInfo = {
    role: turn.role,
    content: turn.content,
    runId: turn.run_id ?? null,
    toolCalls: (turn.tool_calls ?? []).map(snapshotCall),
  };
  return info;
}

export function snapshotEvent(message: SnapshotMessage): SnapshotEvent {
  const run = message.run ? { runId: message.run.run_id, content: message.run.content ?? "" } : null;
  const event: SnapshotEvent = {
    lastSeq: message.last_seq,
    turns: (message.turns ?? []).map(snapshotTurn),
    run,
    pendingCalls: [...(message.pending_calls ?? [])],
    pendingApprovals: [...(message.pending_approvals ?? [])],
  };
  return event;
}

export function stepRetryEvent(message: StepRetryMessage): StepRetryEvent {
  return { runId: message.run_id, step: message.step, attempt: message.attempt, reason: message.reason };
}

export function toolsUpdatedEvent(message: ToolsUpdatedMessage): ToolsUpdatedEvent {
  return { tools: toolsReport(message.tools), removed: [...(message.removed ?? [])], active: [...(message.active ?? [])] };
}

export function runStartEvent(message: RunStartedMessage): RunStartEvent {
  return { runId: message.run_id, content: message.content };
}

export function tokenEvent(message: TokenMessage): TokenEvent {
  return { runId: message.run_id, content: message.content };
}

export function toolRequestEvent(message: ToolRequestMessage): ToolRequestEvent {
  const event: ToolRequestEvent = {
    id: message.id,
    runId: message.run_id,
    name: message.name,
    arguments: message.arguments ?? {},
    timeoutMs: message.timeout_ms,
    interactive: message.interactive ?? false,
    redelivered: message.redelivered ?? false,
  };
  return event;
}

export function toolCancelEvent(message: ToolCancelMessage): ToolCancelEvent {
  return { id: message.id, reason: message.reason };
}

export function toolResultEvent(message: ToolResultMessage): ToolResultEvent {
  const event: ToolResultEvent = {
    id: message.id,
    runId: message.run_id,
    name: message.name,
    status: message.status,
    source: message.source ?? "unknown",
    result: message.result ?? null,
    error: message.error ?? null,
  };
  return event;
}

export function usageFromWire(usage: Usage | null | undefined): TokenUsage | null {
  if (!usage) return null;
  const out: TokenUsage = {};
  if (usage.prompt_tokens !== undefined) out.promptTokens = usage.prompt_tokens;
  if (usage.completion_tokens !== undefined) out.completionTokens = usage.completion_tokens;
  if (usage.total_tokens !== undefined) out.totalTokens = usage.total_tokens;
  return out;
}

export function runCompleteEvent(message: CompleteMessage): RunCompleteEvent {
  const event: RunCompleteEvent = {
    runId: message.run_id,
    reason: message.reason,
    steps: message.steps ?? 0,
    usage: usageFromWire(message.usage),
  };
  return event;
}

export function errorEvent(message: ErrorMessage): BridgeErrorEvent {
  return { code: message.code, message: message.message, id: message.id ?? null, runId: message.run_id ?? null };
}
