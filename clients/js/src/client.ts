// The browser side of the bridge: one WebSocket per session, tools answered in the page.

import type {
  ApprovalRequestMessage,
  ApprovalResponseMessage,
  ClientMessage,
  ErrorMessage,
  HelloMessage,
  ReadyMessage,
  RejectedTool,
  Resumed,
  ServerMessage,
  SnapshotMessage,
  ToolRequestMessage,
  ToolResponseMessage,
  ToolResultMessage,
  ToolsReport,
} from "./protocol.js";
import {
  errorEvent,
  limitsFromWire,
  readyEvent,
  runCompleteEvent,
  runStartEvent,
  snapshotEvent,
  stepRetryEvent,
  tokenEvent,
  toolCancelEvent,
  toolRequestEvent,
  toolResultEvent,
  toolsUpdatedEvent,
  type BridgeErrorCode,
  type BridgeErrorEvent,
  type BridgeLimits,
  type CompleteReason,
  type ReadyEvent,
  type RunCompleteEvent,
  type RunStartEvent,
  type SnapshotEvent,
  type StepRetryEvent,
  type TokenEvent,
  type TokenUsage,
  type ToolCancelEvent,
  type ToolRequestEvent,
  type ToolResultEvent,
  type ToolsUpdatedEvent,
} from "./events.js";
import type { FromSchema, JsonSchema, ObjectSchema } from "./schema.js";
import { Transcript, type ChangeEvent, type Turn } from "./transcript.js";

export type { FromSchema, JsonSchema, ObjectSchema } from "./schema.js";
export type * from "./events.js";
export type * from "./transcript.js";

export const PROTOCOL_VERSION = 1;

/** A tool definition as it travels in `hello` and `register_tools`. */
export interface WireToolDefinition {
  name: string;
  description?: string;
  parameters?: JsonSchema;
  output_schema?: JsonSchema;
  timeout_ms?: number;
  interactive?: boolean;
  read_only?: boolean;
  destructive?: boolean;
  idempotent?: boolean;
  untrusted_content?: boolean;
}

export interface ToolContext {
  /** The call id the server correlates the response with; the same on every redelivery. */
  readonly id: string;
  readonly runId: string;
  readonly name: string;
  readonly timeoutMs: number;
  readonly interactive: boolean;
  /**
   * True when an earlier run of this very call was cut short by a page reload or `close()`;
   * only read-only and idempotent tools are ever run again.
   */
  readonly rerun: boolean;
  /**
   * Aborts when the server cancels the call (`tool_cancel`), or the client closes for good. The
   * reason is a `ToolCancelled` whose `reason` is the server's (`by_user` after `cancelCall`).
   */
  readonly signal: AbortSignal;
  /** Tell the server the call is alive; pushes its deadline out, up to the server's cap. */
  reportProgress(progress?: number | null, message?: string | null): void;
  /** End the call as `denied`: the person refused. */
  deny(message?: string): never;
}

export type ToolHandler<A = Record<string, unknown>, R = unknown> = (
  args: A,
  context: ToolContext,
) => R | Promise<R>;

export interface ToolRegistration<A = Record<string, unknown>, R = unknown> {
  name: string;
  description?: string;
  parameters?: JsonSchema;
  outputSchema?: JsonSchema;
  timeoutMs?: number;
  interactive?: boolean;
  /** The tool changes nothing: safe to run again after a reload cut an earlier run short. */
  readOnly?: boolean;
  /** The tool changes something that matters: by default the server asks a person first. */
  destructive?: boolean;
  /** Running it twice with the same arguments has the effect of running it once. */
  idempotent?: boolean;
  /**
   * The result holds text the user did not write (a web page, the clipboard, a file): the server
   * fences it as data, and later destructive calls in the same run need a person's approval.
   */
  untrustedContent?: boolean;
  handler: ToolHandler<A, R>;
}

/** A tool whose handler's arguments are typed from its literal `parameters` schema. */
export interface ToolDefinition<P extends ObjectSchema, R = unknown>
  extends Omit<ToolRegistration<FromSchema<P>, R>, "parameters" | "handler"> {
  parameters: P;
  handler: ToolHandler<FromSchema<P>, R>;
}

/**
 * A tool with its handler's arguments typed from its `parameters`, written as a literal in the
 * call (or declared elsewhere `as const`): `{type: "object", properties: {city: {type: "string"}},
 * required: ["city"]}` gives `{city: string}`, and a property the schema does not have is a
 * compile error. Checked like `registerTool` checks, at once; returns the tool unchanged.
 */
export function defineTool<const P extends ObjectSchema, R = unknown>(
  tool: ToolDefinition<P, R>,
): ToolRegistration<FromSchema<P>, R> & { parameters: P } {
  checkTool(tool);
  return tool;
}

// The server's rule for names (and most model APIs'): checked here so the mistake is reported
// at the line that made it, not later as a `rejected` event.
const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Throws a TypeError when the server would refuse the tool, or it cannot work at all. */
export function checkTool(tool: ToolRegistration<any, any>): void {
  const name = (tool as { name?: unknown }).name;
  if (typeof name !== "string" || !TOOL_NAME.test(name)) {
    throw new TypeError(`tool name ${JSON.stringify(name)} is not 1-64 letters, digits, _ or -`);
  }
  if (typeof tool.handler !== "function") throw new TypeError(`tool ${name} has no handler`);
  if (tool.description !== undefined && typeof tool.description !== "string") {
    throw new TypeError(`tool ${name}: description must be a string`);
  }
  if (tool.parameters !== undefined) {
    const parameters = tool.parameters as unknown;
    if (!isPlainObject(parameters) || parameters.type !== "object") {
      throw new TypeError(`tool ${name}: parameters must be a JSON Schema with "type": "object" at the top`);
    }
    if (parameters.properties !== undefined && !isPlainObject(parameters.properties)) {
      throw new TypeError(`tool ${name}: parameters.properties must be an object`);
    }
    if (parameters.required !== undefined && !(Array.isArray(parameters.required) && parameters.required.every((item) => typeof item === "string"))) {
      throw new TypeError(`tool ${name}: parameters.required must be a list of names`);
    }
  }
  if (tool.outputSchema !== undefined && !isPlainObject(tool.outputSchema)) {
    throw new TypeError(`tool ${name}: outputSchema must be a JSON Schema object`);
  }
  if (tool.timeoutMs !== undefined && !(Number.isInteger(tool.timeoutMs) && tool.timeoutMs > 0)) {
    throw new TypeError(`tool ${name}: timeoutMs must be a positive whole number of milliseconds`);
  }
  // The server refuses the pair as contradictory; saying so here points at the line to fix.
  if (tool.readOnly && tool.destructive) {
    throw new TypeError(`tool ${name} cannot be both readOnly and destructive`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Throw from a handler (or call `context.deny()`) when the person refused. */
export class ToolDenied extends Error {
  constructor(message = "the person declined") {
    super(message);
    this.name = "ToolDenied";
  }
}

/** Throw from a handler to send an error with a machine-readable code. */
export class ToolCallError extends Error {
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.name = "ToolCallError";
    this.code = code;
  }
}

/** The abort reason a handler's signal carries when its call is cancelled. */
export class ToolCancelled extends Error {
  /** The server's reason (`by_user`, `stopped`, `timed_out`, ...) or the client's own. */
  readonly reason: string;
  constructor(reason: string) {
    super(`tool call cancelled: ${reason}`);
    // Code that checks for an abort by name (fetch, DOM APIs, `signal.throwIfAborted()`) still works.
    this.name = "AbortError";
    this.reason = reason;
  }
}

/** The server refused something this client asked for (an approval answer, a cancel, a message). */
export class BridgeError extends Error {
  /** The server's error code (`unknown_approval`, `invalid_arguments`, `unknown_call`, ...) or `client_*`. */
  readonly code: BridgeErrorCode;
  /** The call the refusal is about. */
  readonly id: string | undefined;
  constructor(code: BridgeErrorCode, message: string, id?: string) {
    super(message);
    this.name = "BridgeError";
    this.code = code;
    this.id = id;
  }
}

export interface ApproveOptions {
  /** Run the call with these arguments instead; the server checks them against the tool's schema. */
  arguments?: Record<string, unknown>;
  /** `"session"`: further calls of this tool in this session run without asking. */
  remember?: "session";
}

/**
 * Where an approval request stands: `open` (waiting for this page), `answering` (an answer is on
 * its way), or over: `approved`, `denied`, `expired`, `cancelled`, `closed` (ended some other way:
 * the session was replaced, the server no longer had the question).
 */
export type ApprovalState = "open" | "answering" | "approved" | "denied" | "expired" | "cancelled" | "closed";

export type ApprovalOutcome = "approved" | "denied" | "expired" | "cancelled" | "closed";

/** A person must decide before a tool call runs: the `approvalRequest` event's object. */
export interface ApprovalRequest {
  /** The call's own id: the same in `toolRequest`, `toolResult` and `cancelCall`. */
  readonly id: string;
  readonly runId: string;
  readonly name: string;
  readonly arguments: Record<string, unknown>;
  /** Why the server asks, in words for the person (e.g. "untrusted content in this run"). */
  readonly reason: string;
  /** Wall-clock time (ms since the epoch) after which the call ends `approval_expired`. */
  readonly expiresAt: number;
  /** Asked again after a reconnect or a page reload (this page had not seen it). */
  readonly redelivered: boolean;
  readonly state: ApprovalState;
  /** Aborts when the question ends without this page's answer (expired, run stopped, ...). */
  readonly signal: AbortSignal;
  /**
   * Let the call run, with edited arguments if given. Resolves once the server has taken the
   * answer; rejects with a `BridgeError`: `invalid_arguments` (the edit does not match the tool's
   * schema; the question stays open and can be answered again) or `unknown_approval` (the
   * question is over: expired, cancelled, or answered already).
   */
  approve(options?: ApproveOptions): Promise<void>;
  /** Refuse the call; the model gets `denied` and the reason. Settles like `approve`. */
  deny(reason?: string): Promise<void>;
}

export interface ApprovalSettledEvent {
  id: string;
  outcome: ApprovalOutcome;
}

export type ConnectionStatus = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface StatusEvent {
  status: ConnectionStatus;
  /** Reconnect attempts since the last `ready`. */
  attempt: number;
  /** How long until the next attempt, when reconnecting. */
  delayMs?: number;
  /** Close code and reason of the socket that just closed, if one did. */
  code?: number;
  reason?: string;
}

export interface ToolProgressEvent {
  id: string;
  progress?: number;
  message?: string;
}

/** What `send()` resolves to once the run its message started is complete. */
export interface RunResult {
  runId: string;
  /** The run's text, as the transcript has it (a step made again counts once). */
  text: string;
  /** Every call of the run with its terminal result, server-side tools included. */
  toolResults: ToolResultEvent[];
  /**
   * How it ended; `unknown` when it ended while this page was away for longer than the server's
   * replay window (the snapshot showed its text, not how it ended).
   */
  reason: CompleteReason | "unknown";
  usage: TokenUsage | null;
}

/** The session carried on over a new connection: `ready.resumed`, and what the client did. */
export interface ResumedEvent {
  fromSeq: number;
  pendingCalls: string[];
  /** Approval requests still open; each is (or was already) surfaced once as `approvalRequest`. */
  pendingApprovals: string[];
  /** The server could not replay everything missed; a `snapshot` event follows. */
  gap: boolean;
  /** The session was picked up from storage: this page (or client) is not the one that began it. */
  reload: boolean;
  /** Call ids whose kept results were sent again. */
  resent: string[];
  /** Call ids answered `outcome_unknown`: their handlers started before a reload and never reported. */
  outcomeUnknown: string[];
}

/** The server no longer had the session: what the page shows of the conversation is gone. */
export interface ResetEvent {
  code: string;
  message: string;
}

export interface AgentBridgeEvents {
  status: StatusEvent;
  ready: ReadyEvent;
  /** After `ready`, when it carried on an existing session. */
  resumed: ResumedEvent;
  /** The conversation so far, sent when replay could not cover what was missed (e.g. after a reload). */
  snapshot: SnapshotEvent;
  /**
   * The server no longer had the session (it expired, or the server restarted without a shared
   * store): a fresh one started under the same id, and the conversation shown so far is gone.
   */
  reset: ResetEvent;
  /** The text streamed so far in the run's current step is void; a new attempt's tokens follow. */
  stepRetry: StepRetryEvent;
  toolsUpdated: ToolsUpdatedEvent;
  /** Tools the server refused, with its validation errors; fired (after `ready`) when there are any. */
  rejected: RejectedTool[];
  runStart: RunStartEvent;
  token: TokenEvent;
  toolRequest: ToolRequestEvent;
  toolProgress: ToolProgressEvent;
  toolCancel: ToolCancelEvent;
  toolResult: ToolResultEvent;
  /**
   * A person must approve a call before it runs. Emitted once per call id in a page, including
   * for requests still open after a reconnect or a page reload.
   */
  approvalRequest: ApprovalRequest;
  /** An approval request is over, answered here or not. */
  approvalSettled: ApprovalSettledEvent;
  runComplete: RunCompleteEvent;
  error: BridgeErrorEvent;
  /** `messages` changed: a turn was added, or a turn's text or tool parts. */
  change: ChangeEvent;
  /**
   * Every server frame as it came over the wire (the protocol's snake_case), after the specific
   * event: for logging and protocol tools; apps read the events above.
   */
  message: ServerMessage;
}

export type Listener<T> = (event: T) => void;

export interface ReconnectOptions {
  /** The wait before the second attempt; the first is immediate. */
  initialDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  /** 0..1: how much of each delay is randomised, so many tabs do not reconnect in step. */
  jitter?: number;
}

/** The part of the WebSocket API the client uses, so tests can hand it a fake. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = new (url: string) => WebSocketLike;

/** The part of the Web Storage API the client uses (`sessionStorage` fits). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** The page events the client listens to; `window` and `document` have them. */
export interface PageLike {
  addEventListener(type: string, listener: (event: unknown) => void): void;
  removeEventListener(type: string, listener: (event: unknown) => void): void;
  readonly visibilityState?: string;
}

/** The part of `BroadcastChannel` the client uses to tell tabs apart. */
export interface ChannelLike {
  onmessage: ((event: { data: unknown }) => void) | null;
  postMessage(message: unknown): void;
  close(): void;
}

export type ChannelFactory = new (name: string) => ChannelLike;

export interface AgentBridgeOptions {
  /**
   * A shared token, sent as `?token=` (browsers cannot set headers on a WebSocket handshake). For
   * pages, prefer `ticket`: a URL ends up in logs and history, a ticket is good once for seconds.
   */
  token?: string;
  /**
   * Called before each connection for a single-use ticket, sent as `?ticket=` instead of a token:
   * typically a `POST /ws-ticket` with the page's normal credentials (see `fetchTicket`). A
   * failure is retried like a dropped connection. `null` connects without one this time (a page
   * that learns from a `4401` that the server wants credentials, and asks the person for them).
   */
  ticket?: () => Promise<string | null> | string | null;
  /**
   * Appended to the URL as /ws/agent/{sessionId} unless the URL already names a session. Without
   * one the client makes one per tab, kept in `storage` so a reload of the page comes back to the
   * same session, and a duplicated tab (whose storage is a copy) gets its own. Two pages that
   * connect with the same id evict each other (close code 4409): choose an id yourself only when
   * one page at a time should hold the conversation.
   */
  sessionId?: string;
  clientName?: string;
  /** Connect in the constructor (default true); otherwise call `connect()`. */
  autoConnect?: boolean;
  /** `false` turns reconnecting off. */
  reconnect?: ReconnectOptions | false;
  /**
   * Where the resume token, the last `seq`, calls in progress and unacknowledged results are kept
   * so a page reload resumes the session: `sessionStorage` by default, `null` to keep nothing.
   */
  storage?: StorageLike | null;
  /**
   * What the first connection after a reload asks for: `"snapshot"` (default), the whole
   * conversation, since the reloaded page has lost what it showed; or `"replay"`, only what
   * came after the last `seq` the previous page processed (for apps that keep their own view).
   */
  afterReload?: "snapshot" | "replay";
  WebSocket?: WebSocketFactory;
  /**
   * Where `online`, `visibilitychange`, `pagehide` and `pageshow` come from: `window` and
   * `document` by default; `null` listens to nothing (a reconnect then waits for its backoff).
   */
  page?: PageLike | null;
  /** How tabs find each other (to tell a duplicated tab from a reload): `BroadcastChannel` by default. */
  BroadcastChannel?: ChannelFactory | null;
  /** For tests: the randomness behind the jitter. */
  random?: () => number;
}

const OPEN = 1;
const DEFAULT_RECONNECT: Required<ReconnectOptions> = {
  initialDelayMs: 250,
  maxDelayMs: 10_000,
  factor: 2,
  jitter: 0.3,
};
// Retrying cannot help: the token is wrong or refused, another tab now owns the session, the
// server refuses what this client is (bad session id, unsupported protocol), or a message of
// ours is too big and would be sent again.
const FINAL_CLOSE_CODES = new Set([1008, 1009, 4401, 4403, 4409]);
// The server is going away or restarting: it will be back soon, so the client keeps trying
// often (at most RESTART_DELAY_MS apart) for RESTART_WINDOW_MS instead of backing off to 10 s.
const RESTART_CLOSE_CODES = new Set([1001, 1012]);
const RESTART_DELAY_MS = 1_000;
const RESTART_WINDOW_MS = 30_000;
// After `4429` the server asks for a wait ("retry in N s"); never less than this.
const RATE_LIMITED_MIN_MS = 5_000;
// A hint is honoured up to this; a reason asking for longer is more likely a mistake than a plan.
const RATE_LIMITED_MAX_MS = 600_000;
const RETRY_IN = /(?:retry|try again) in (\d+(?:\.\d+)?) ?s\b|(?:retry|try again) in a minute/;
// Used until a `ready` has told the real heartbeat: the server's defaults, 20 s + 20 s.
const DEFAULT_DEAD_LINK_MS = 40_000;
// When the page comes back (visible, online) on a link that has been quiet a while, a ping must
// be answered within this or the link is taken for dead.
const WAKE_PROBE_MS = 5_000;
// How long a tab that found its session id marked in use waits for the holder to answer.
const CLAIM_PROBE_MS = 150;
const CHANNEL_NAME = "agent-bridge:v1";
// From the socket's creation to `ready`; the server itself waits 10 s for a hello.
const HANDSHAKE_TIMEOUT_MS = 15_000;
// How many acknowledged call ids are remembered, so a stray replay of an old request never runs.
const ACKNOWLEDGED_MEMORY = 1024;
const SESSION_IN_PATH = /\/ws\/agent\/([^/]+)\/?$/;
const STORAGE_PREFIX = "agent-bridge:v1";

interface Call {
  controller: AbortController;
  request: ToolRequestMessage;
  started: number;
}

/** A call whose handler started in an earlier page (or before `close()`) and never reported. */
interface Interrupted {
  name: string;
  started: number;
}

interface Kept {
  name: string;
  response: ToolResponseMessage;
  /** The socket it was last written to: enough, since a socket either delivers or closes. */
  sentOn: WebSocketLike | null;
}

/** A user message until its `run_started` shows the server has it. */
interface Outgoing {
  content: string;
  /** The socket it was written to; one that is no longer current may have lost it. */
  sentOn: WebSocketLike | null;
  /** Its turn in the transcript. */
  turn: ReturnType<Transcript["addUser"]>;
  waiter: Waiter;
}

interface OpenApproval {
  message: ApprovalRequestMessage;
  handle: ApprovalRequest;
  controller: AbortController;
  state: ApprovalState;
  /** An answer was written to a socket: the question's end is then this page's doing. */
  answered: boolean;
}

/**
 * Something the client asked of the server (an approval answer, a cancel) whose fate it reports
 * to the caller. The server handles a connection's frames in order and answers a refusal at once,
 * so the `pong` to a `ping` sent right behind it means it was taken.
 */
interface Request {
  kind: "approval" | "cancel";
  id: string;
  message: ClientMessage;
  sentOn: WebSocketLike | null;
  nonce: string | null;
  resolve: () => void;
  reject: (error: BridgeError) => void;
}

/** A user message's promise, until its run completes. */
interface Waiter {
  resolve: (result: RunResult) => void;
  reject: (error: BridgeError) => void;
}

/** Where a generated session id is kept, and whether a live page holds it. */
interface SessionPointer {
  id: string;
  /** False once the page that held it went (`pagehide`): the next page to load is a reload. */
  held: boolean;
}

interface SavedSession {
  v: 1;
  sessionId: string;
  token: string;
  lastSeq: number;
  calls: { id: string; name: string; started: number }[];
  results: { id: string; name: string; response: ToolResponseMessage }[];
}

export class AgentBridge {
  private currentUrl: string;
  private currentSessionId: string;
  private readonly token: string | undefined;
  private readonly ticketSource: (() => Promise<string | null> | string | null) | null;
  private readonly clientName: string;
  private readonly reconnectOptions: Required<ReconnectOptions> | false;
  private readonly WebSocketImpl: WebSocketFactory | null;
  private readonly random: () => number;
  private readonly storage: StorageLike | null;
  private storageKey: string;
  /** Where a generated session id is kept; null when the app chose the id. */
  private readonly sessionPointerKey: string | null;
  /** The URL as given, to make the socket URL again when the session id changes. */
  private readonly baseUrl: string;
  private readonly page: PageLike | null;
  private readonly visibility: PageLike | null;
  private readonly pageListeners: [PageLike, string, (event: unknown) => void][] = [];
  private channel: ChannelLike | null = null;
  /** Settles once this tab knows the session id is its own (a duplicated tab's is not). */
  private claim: Promise<void> | null = null;
  /** A connection is being prepared (the claim, a ticket) before its socket exists. */
  private preparing = false;
  private preparations = 0;
  private readonly transcript: Transcript;
  /** Promises of `send()` whose run has started, by run id. */
  private readonly waiters = new Map<string, Waiter>();
  private lastFrameAt = 0;
  private restartUntil = 0;
  private rateLimitedUntil = 0;
  private ticketRefusals = 0;
  private readonly afterReload: "snapshot" | "replay";
  private readonly tools = new Map<string, ToolRegistration<any, any>>();
  private readonly listeners = new Map<keyof AgentBridgeEvents, Set<Listener<any>>>();
  private readonly calls = new Map<string, Call>();
  private readonly interrupted = new Map<string, Interrupted>();
  private readonly results = new Map<string, Kept>();
  private readonly acknowledged = new Set<string>();
  private readonly approvals = new Map<string, OpenApproval>();
  /** Approval ids already over, so a stray replay of their request is not shown again. */
  private readonly closedApprovals = new Set<string>();
  private requests: Request[] = [];
  private confirmations = 0;
  private outgoing: Outgoing[] = [];
  /** Runs seen to start, so a snapshot's user turns confirm only messages not yet confirmed. */
  private readonly knownRuns = new Set<string>();
  private syncNonce: string | null = null;
  private syncs = 0;
  private readonly rejected = new Map<string, RejectedTool>();
  private socket: WebSocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private watchdog: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private closedByUser = false;
  private currentStatus: ConnectionStatus = "idle";
  private run: string | null = null;
  private ready: ReadyMessage | null = null;
  /** `ready` has arrived on the current socket. */
  private greeted = false;
  private resumeToken: string | null = null;
  private resumeSent = false;
  private fromStorage = false;
  private resetError: ResetEvent | null = null;
  private storageFailed = false;
  /** The current connection was opened with a ticket. */
  private usedTicket = false;
  /** Sequence number of the last server message processed. */
  lastSeq = 0;

  constructor(url: string, options: AgentBridgeOptions = {}) {
    const found = SESSION_IN_PATH.exec(url.split(/[?#]/)[0] ?? "");
    this.baseUrl = url;
    this.storage = options.storage === undefined ? defaultStorage() : options.storage;
    this.transcript = new Transcript(() => this.emit("change", { messages: this.transcript.messages }));
    this.page = options.page === undefined ? defaultPage("window") : options.page;
    this.visibility = options.page === undefined ? defaultPage("document") : options.page;
    let sessionId = options.sessionId ?? (found ? decodeURIComponent(found[1]!) : null);
    this.sessionPointerKey = null;
    let duplicate: SessionPointer | null = null;
    if (sessionId === null) {
      this.sessionPointerKey = `${STORAGE_PREFIX}:session:${socketUrl(url, null)}`;
      const pointer = this.readPointer();
      sessionId = pointer?.id ?? newSessionId();
      // Marked held: either this tab is a duplicate (its storage a copy of a live tab's) or the
      // page that held it ended without `pagehide` (a crash). Only the other tab can tell.
      if (pointer?.held) duplicate = pointer;
    }
    this.currentSessionId = sessionId;
    this.currentUrl = socketUrl(url, found ? null : sessionId);
    this.storageKey = `${STORAGE_PREFIX}:${sessionId}:${this.currentUrl}`;
    this.afterReload = options.afterReload ?? "snapshot";
    this.token = options.token;
    this.ticketSource = options.ticket ?? null;
    this.clientName = options.clientName ?? "agent-bridge-js";
    this.reconnectOptions =
      options.reconnect === false ? false : { ...DEFAULT_RECONNECT, ...options.reconnect };
    // Looked up when connecting, so a client can be made (and tools registered) where there is
    // no WebSocket yet, as in Node 20 without --experimental-websocket.
    this.WebSocketImpl = options.WebSocket ?? null;
    if (options.autoConnect !== false) webSocketImpl(this.WebSocketImpl);
    this.random = options.random ?? Math.random;
    if (this.sessionPointerKey !== null) {
      const Channel =
        options.BroadcastChannel === undefined
          ? (globalThis as { BroadcastChannel?: ChannelFactory }).BroadcastChannel ?? null
          : options.BroadcastChannel;
      this.openChannel(Channel);
      this.writePointer(true);
    }
    if (duplicate !== null && this.channel !== null) {
      // What is restored depends on whose id this is: wait for the answer before using it.
      this.claim = this.probe(duplicate.id).then((taken) => {
        this.claim = null;
        if (taken) this.takeNewSessionId();
        this.restore();
      });
    } else {
      this.restore();
    }
    this.listenToPage();
    if (options.autoConnect !== false) {
      // Deferred so the page can register tools and listeners first and they go in the hello.
      queueMicrotask(() => {
        if (this.currentStatus === "idle") this.connect();
      });
    }
  }

  // State -----------------------------------------------------------------------------------

  /** The WebSocket endpoint, `/ws/agent/{sessionId}`. */
  get url(): string {
    return this.currentUrl;
  }

  /**
   * The session's id. A generated one can change once, before the first connection, when this
   * tab turns out to be a duplicate of another that holds it.
   */
  get sessionId(): string {
    return this.currentSessionId;
  }

  /**
   * The conversation as user and assistant turns, kept current from the server's events and
   * rebuilt from its snapshot after a reload; a new array (and new objects for what changed) on
   * every `change`.
   */
  get messages(): readonly Turn[] {
    return this.transcript.messages;
  }

  get status(): ConnectionStatus {
    return this.currentStatus;
  }

  /** Tools the server refused, by name, with its reasons. */
  get rejectedTools(): RejectedTool[] {
    return [...this.rejected.values()];
  }

  get serverTools(): string[] {
    return this.ready?.server_tools ?? [];
  }

  get limits(): BridgeLimits | null {
    return this.ready ? limitsFromWire(this.ready.limits) : null;
  }

  /** The run in progress, if any. */
  get runId(): string | null {
    return this.run;
  }

  get toolNames(): string[] {
    return [...this.tools.keys()];
  }

  /** Whether a dropped connection can carry on the session (the server gave a resume token). */
  get resumable(): boolean {
    return this.resumeToken !== null;
  }

  /** Ids of calls whose results the server has not acknowledged yet. */
  get unacknowledged(): string[] {
    return [...this.results.keys()];
  }

  // Events ----------------------------------------------------------------------------------

  on<K extends keyof AgentBridgeEvents>(type: K, listener: Listener<AgentBridgeEvents[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener);
    return () => this.off(type, listener);
  }

  off<K extends keyof AgentBridgeEvents>(type: K, listener: Listener<AgentBridgeEvents[K]>): void {
    this.listeners.get(type)?.delete(listener);
  }

  private emit<K extends keyof AgentBridgeEvents>(type: K, event: AgentBridgeEvents[K]): void {
    for (const listener of [...(this.listeners.get(type) ?? [])]) {
      try {
        listener(event);
      } catch (error) {
        // A broken listener must not break the protocol; rethrown later so it still surfaces.
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  // Tools -----------------------------------------------------------------------------------

  /**
   * Add a tool; sent in the next hello, or at once when connected. Returns its remover. Throws a
   * TypeError at once for what the server would refuse (see `checkTool`). With a literal
   * `parameters` schema the handler's arguments are typed from it, as with `defineTool`.
   */
  registerTool<const P extends ObjectSchema, R = unknown>(tool: ToolDefinition<P, R>): () => void;
  registerTool<A = Record<string, unknown>, R = unknown>(tool: ToolRegistration<A, R>): () => void;
  registerTool(tool: ToolRegistration<any, any>): () => void {
    this.registerTools([tool]);
    return () => this.unregisterTool(tool.name);
  }

  registerTools(tools: Iterable<ToolRegistration<any, any>>): void {
    const added: ToolRegistration<any, any>[] = [];
    const names = new Set<string>();
    for (const tool of tools) {
      checkTool(tool);
      if (this.tools.has(tool.name) || names.has(tool.name)) {
        throw new Error(`a tool named ${tool.name} is already registered`);
      }
      names.add(tool.name);
      added.push(tool);
    }
    for (const tool of added) this.tools.set(tool.name, tool);
    if (added.length > 0 && this.currentStatus === "open") {
      this.transmit({ type: "register_tools", tools: added.map(toWire) as unknown as Record<string, unknown>[] });
    }
  }

  unregisterTool(name: string): boolean {
    if (!this.tools.delete(name)) return false;
    const wasRejected = this.rejected.delete(name);
    if (this.currentStatus === "open" && !wasRejected) {
      this.transmit({ type: "unregister_tools", names: [name] });
    }
    return true;
  }

  /** The definitions as the server receives them. */
  definitions(): WireToolDefinition[] {
    return [...this.tools.values()].map(toWire);
  }

  // Connection ------------------------------------------------------------------------------

  connect(): void {
    this.closedByUser = false;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.socket || this.preparing) return;
    this.setStatus({ status: this.attempt > 0 ? "reconnecting" : "connecting", attempt: this.attempt });
    if (this.claim === null && this.ticketSource === null) {
      this.openSocket(null);
      return;
    }
    // Something must settle first (whose session id this is, a fresh ticket): the socket
    // opens after it, unless close() or another connect() came in between.
    this.preparing = true;
    const preparation = ++this.preparations;
    void this.prepare().then(
      (ticket) => {
        if (preparation !== this.preparations) return;
        this.preparing = false;
        if (!this.closedByUser) this.openSocket(ticket);
      },
      (error: unknown) => {
        if (preparation !== this.preparations) return;
        this.preparing = false;
        if (this.closedByUser) return;
        this.emit("error", { code: "client_ticket_failed", message: `no ticket: ${describe(error)}`, id: null, runId: null });
        this.onClosed(null, 1006, "no ticket");
      },
    );
  }

  private async prepare(): Promise<string | null> {
    if (this.claim !== null) await this.claim;
    if (this.ticketSource === null) return null;
    const ticket = await this.ticketSource();
    if (ticket === null) return null;
    if (typeof ticket !== "string" || ticket === "") throw new Error("the ticket function gave no ticket");
    return ticket;
  }

  private openSocket(ticket: string | null): void {
    let url = this.url;
    // A ticket stands for the credentials; the long-lived token then stays out of the URL.
    if (ticket !== null) url = withQuery(url, "ticket", ticket);
    else if (this.token) url = withQuery(url, "token", this.token);
    this.usedTicket = ticket !== null;
    // No WebSocket at all is a mistake to report where connect() was called, not to retry.
    const Impl = webSocketImpl(this.WebSocketImpl);
    let socket: WebSocketLike;
    try {
      socket = new Impl(url);
    } catch (error) {
      this.emit("error", { code: "client_connect_failed", message: describe(error), id: null, runId: null });
      this.onClosed(null, 1006, "");
      return;
    }
    this.socket = socket;
    this.greeted = false;
    socket.onopen = () => {
      const hello: HelloMessage = {
        type: "hello",
        protocol: PROTOCOL_VERSION,
        tools: this.definitions() as unknown as Record<string, unknown>[],
        client: this.clientName,
      };
      this.resumeSent = this.resumeToken !== null;
      if (this.resumeToken !== null) hello.resume = { token: this.resumeToken, last_seq: this.lastSeq };
      this.resetError = null;
      this.transmit(hello);
    };
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onclose = (event) => this.onClosed(socket, event.code, event.reason);
    // In browsers `error` is always followed by `close`, which carries what there is to know; some
    // implementations (Node's) never send `close` for a failed handshake, so that ends it here.
    socket.onerror = () => {
      if (socket.readyState !== OPEN) this.onClosed(socket, 1006, "");
    };
    // A handshake that never completes is a dead link too.
    this.armWatchdog();
  }

  /**
   * Close for good: no reconnect until `connect()` is called again. The server holds the session
   * for a while, so `connect()` (or a new page) can still resume it; `bye()` ends it.
   */
  close(code = 1000, reason = "client closed"): void {
    this.closedByUser = true;
    this.preparing = false;
    this.preparations += 1;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const socket = this.socket;
    if (socket) {
      socket.close(code, reason);
      this.onClosed(socket, code, reason);
    } else {
      this.setStatus({ status: "closed", attempt: this.attempt, code, reason });
    }
  }

  /** Leave for good: the server ends the session at once, and nothing is kept for a resume. */
  bye(): void {
    if (this.greeted) this.transmit({ type: "bye" });
    for (const id of [...this.calls.keys()]) this.abortCall(id, "bye");
    for (const id of [...this.approvals.keys()]) this.closeApproval(id, "closed");
    this.interrupted.clear();
    this.results.clear();
    this.dropOutgoing(this.outgoing, "client_closed", "the session was ended with bye() before the message's run began");
    this.resumeToken = null;
    this.lastSeq = 0;
    this.remove(this.storageKey);
    if (this.sessionPointerKey !== null) this.remove(this.sessionPointerKey);
    this.close(1000, "bye");
    // The session is over for this page: nothing to answer for or listen to any more.
    for (const [target, type, listener] of this.pageListeners) target.removeEventListener(type, listener);
    this.pageListeners.length = 0;
    this.channel?.close();
    this.channel = null;
  }

  // Runs ------------------------------------------------------------------------------------

  /**
   * Send a user message; queued until the connection is ready when it is not yet. Across drops it
   * is delivered once: one that may have been lost with a connection is sent again only when the
   * server shows it never got it.
   */
  send(text: string): Promise<RunResult> {
    let waiter!: Waiter;
    const result = new Promise<RunResult>((resolve, reject) => {
      waiter = { resolve, reject };
    });
    // A page that only renders `messages` need not await this; a refusal is then not an
    // unhandled rejection. Whoever awaits it still gets it.
    result.catch(() => undefined);
    const turn = this.transcript.addUser(text);
    this.outgoing.push({ content: text, sentOn: null, turn, waiter });
    if (this.currentStatus === "open") this.flush();
    return result;
  }

  /**
   * Cancel one tool call (the person clicked "cancel" on its card): the call ends `cancelled`, its
   * handler's signal aborts with reason `by_user`, and the run goes on. Works on a call waiting
   * for approval too. Resolves once the server has taken it; rejects with a `BridgeError`
   * `unknown_call` when no such call is waiting or running.
   */
  cancelCall(id: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.ask({ kind: "cancel", id, message: { type: "cancel_call", id }, sentOn: null, nonce: null, resolve, reject });
    });
  }

  /** The approval requests still waiting for an answer, in the order they were asked. */
  get pendingApprovals(): ApprovalRequest[] {
    return [...this.approvals.values()].map((approval) => approval.handle);
  }

  /**
   * Stop the current run, and drop the messages queued behind it (their `send()` promises reject
   * with `client_stopped`). False when there is no run to stop, or no connection to send it on.
   */
  stop(): boolean {
    // A message the server has (sent on this connection) may have started a run we have not
    // heard of yet: the stop is for that run.
    const current =
      this.run === null ? this.outgoing.find((entry) => entry.sentOn !== null && entry.sentOn === this.socket) ?? null : null;
    const running = this.run !== null || current !== null;
    // The server drops what is queued behind the run, so none of it may be sent again.
    this.dropOutgoing(
      this.outgoing.filter((entry) => entry !== current),
      "client_stopped",
      "stop() dropped the message before its run began",
    );
    if (!running || this.currentStatus !== "open") return false;
    this.transmit({ type: "stop" });
    return true;
  }

  // Internals -------------------------------------------------------------------------------

  /** These messages will never start a run: out of the queue, their promises rejected. */
  private dropOutgoing(entries: readonly Outgoing[], code: BridgeErrorCode, message: string): void {
    if (entries.length === 0) return;
    const gone = new Set(entries);
    this.outgoing = this.outgoing.filter((entry) => !gone.has(entry));
    for (const entry of entries) {
      this.transcript.drop(entry.turn);
      entry.waiter.reject(new BridgeError(code, message));
    }
  }

  private transmit(message: ClientMessage): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  /** Send the messages not sent yet, in order, unless earlier ones are still in doubt. */
  private flush(): void {
    if (this.syncNonce !== null || this.uncertain().length > 0) return;
    for (const entry of this.outgoing) {
      if (entry.sentOn === null && this.transmit({ type: "message", content: entry.content })) {
        entry.sentOn = this.socket;
      }
    }
  }

  private uncertain(): Outgoing[] {
    return this.outgoing.filter((entry) => entry.sentOn !== null && entry.sentOn !== this.socket);
  }

  /**
   * Find out whether messages written to a lost connection reached the server. One it got starts
   * a run at once when none is running, so once a ping sent now is answered (after the replay)
   * with no run going, every message still unconfirmed was lost.
   */
  private reconcile(): void {
    if (this.syncNonce !== null || !this.greeted) return;
    if (this.uncertain().length === 0) {
      this.flush();
      return;
    }
    this.syncs += 1;
    this.syncNonce = `sync-${this.syncs}`;
    this.transmit({ type: "ping", nonce: this.syncNonce });
  }

  private onSync(): void {
    this.syncNonce = null;
    // A run is going: a lost message could still be queued behind it; the next `complete` asks again.
    if (this.run !== null) return;
    for (const entry of this.uncertain()) {
      if (this.transmit({ type: "message", content: entry.content })) entry.sentOn = this.socket;
    }
    this.flush();
  }

  /** The server has a message: its run started. Returns the page's entry for it, if it sent it. */
  private confirm(content: string, runId: string): Outgoing | null {
    this.knownRuns.add(runId);
    if (this.knownRuns.size > ACKNOWLEDGED_MEMORY) {
      this.knownRuns.delete(this.knownRuns.values().next().value as string);
    }
    const index = this.outgoing.findIndex((entry) => entry.sentOn !== null && entry.content === content);
    if (index < 0) return null;
    const [entry] = this.outgoing.splice(index, 1);
    this.waiters.set(runId, entry!.waiter);
    return entry!;
  }

  /** The run is over: its `send()` promise resolves with what the transcript has of it. */
  private settleRun(runId: string, reason: CompleteReason | "unknown", usage: TokenUsage | null): void {
    const waiter = this.waiters.get(runId);
    if (!waiter) return;
    this.waiters.delete(runId);
    waiter.resolve({ runId, ...this.transcript.outcome(runId), reason, usage });
  }

  private setStatus(event: StatusEvent): void {
    this.currentStatus = event.status;
    this.emit("status", event);
  }

  private receive(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    // Any frame at all proves the link alive; the server pings often enough to keep it so.
    this.lastFrameAt = Date.now();
    this.armWatchdog();
    let message: ServerMessage;
    try {
      message = JSON.parse(String(data)) as ServerMessage;
    } catch (error) {
      this.emit("error", { code: "client_invalid_frame", message: `unreadable frame: ${describe(error)}`, id: null, runId: null });
      return;
    }
    // `ready` and `snapshot` head a connection and carry no seq of their own; what comes before
    // `ready` (a refusal) is about this connection, not the session's stream.
    const header = message.type === "ready" || message.type === "snapshot";
    if (!header && this.greeted && typeof message.seq === "number") {
      if (message.seq <= this.lastSeq) return;
      this.lastSeq = message.seq;
    }
    switch (message.type) {
      case "ping":
        this.transmit({ type: "pong", nonce: message.nonce ?? null });
        break;
      case "ready":
        this.onReady(message);
        break;
      case "snapshot":
        this.onSnapshot(message);
        break;
      case "step_retry": {
        const event = stepRetryEvent(message);
        this.transcript.stepRetry(event.runId, event.step, event.attempt, event.reason);
        this.emit("stepRetry", event);
        break;
      }
      case "tools_updated":
        this.noteRejections(message.tools, false);
        this.emit("toolsUpdated", toolsUpdatedEvent(message));
        this.emitRejections(message.tools);
        break;
      case "run_started": {
        this.run = message.run_id;
        const entry = this.confirm(message.content, message.run_id);
        this.transcript.started(message.run_id, message.content, entry?.turn ?? null);
        this.emit("runStart", runStartEvent(message));
        break;
      }
      case "token":
        this.transcript.token(message.run_id, message.content);
        this.emit("token", tokenEvent(message));
        break;
      case "tool_request":
        // Only an approved call is dispatched: whoever answered, the question is over.
        this.closeApproval(message.id, "approved");
        void this.answer(message);
        break;
      case "approval_request":
        this.onApprovalRequest(message);
        break;
      case "tool_cancel":
        this.abortCall(message.id, message.reason);
        this.settled(message.id);
        this.transcript.cancelled(message.id, message.reason);
        this.emit("toolCancel", toolCancelEvent(message));
        break;
      case "tool_result": {
        this.settled(message.id);
        this.closeApproval(message.id, approvalOutcome(message.status));
        const event = toolResultEvent(message);
        this.transcript.toolResult(event);
        this.emit("toolResult", event);
        break;
      }
      case "complete": {
        if (this.run === message.run_id) this.run = null;
        // Every call of a run has its result before `complete`; this only tidies after a gap.
        for (const [id, approval] of [...this.approvals]) {
          if (approval.message.run_id === message.run_id) this.closeApproval(id, "closed");
        }
        const event = runCompleteEvent(message);
        this.transcript.complete(event);
        this.settleRun(event.runId, event.reason, event.usage);
        this.emit("runComplete", event);
        if (this.run === null && this.syncNonce === null && this.uncertain().length > 0) this.reconcile();
        break;
      }
      case "error":
        this.onError(message as ErrorMessage);
        break;
      case "pong":
        if (this.syncNonce !== null && message.nonce === this.syncNonce) this.onSync();
        else this.onConfirmed(message.nonce ?? null);
        break;
      default:
        // A newer server may add messages; they still reach `message` listeners.
        break;
    }
    this.save();
    this.emit("message", message);
  }

  private onSnapshot(message: SnapshotMessage): void {
    this.lastSeq = message.last_seq;
    const event = snapshotEvent(message);
    const open = new Set(event.pendingApprovals);
    for (const id of [...this.approvals.keys()]) if (!open.has(id)) this.closeApproval(id, "closed");
    this.run = event.run?.runId ?? null;
    for (const turn of event.turns) {
      if (turn.role === "user" && turn.runId && !this.knownRuns.has(turn.runId)) {
        this.confirm(turn.content, turn.runId);
      }
    }
    const handles = new Map([...this.approvals].map(([id, approval]) => [id, approval.handle] as const));
    this.transcript.snapshot(event, handles, this.outgoing.map((entry) => entry.turn));
    // A run this page waits for and the snapshot shows over ended while the page was away for
    // longer than the replay window: its text is known, not how it ended.
    const shown = new Set(event.turns.map((turn) => turn.runId));
    for (const runId of [...this.waiters.keys()]) {
      if (runId !== this.run && shown.has(runId)) this.settleRun(runId, "unknown", null);
    }
    this.emit("snapshot", event);
    if (this.run === null) this.reconcile();
  }

  private onError(message: ErrorMessage): void {
    this.onRefused(message);
    if (message.code === "queue_full") {
      // The server refused the latest message: it will never start a run to confirm it.
      for (let index = this.outgoing.length - 1; index >= 0; index -= 1) {
        if (this.outgoing[index]!.sentOn !== null) {
          this.dropOutgoing([this.outgoing[index]!], "queue_full", message.message);
          break;
        }
      }
    } else if (message.code === "session_expired") {
      this.resetError = { code: message.code, message: message.message };
    } else if (message.code === "resume_denied") {
      // The token is not this session's: nothing of it can be resumed, from here or a reload.
      this.forgetSession();
    }
    this.emit("error", errorEvent(message));
  }

  private onReady(message: ReadyMessage): void {
    const resumed = message.resumed ?? null;
    const reset = this.resumeSent && resumed === null;
    this.greeted = true;
    this.ready = message;
    // From here on the heartbeat's own bound applies.
    this.armWatchdog();
    this.attempt = 0;
    this.restartUntil = 0;
    this.ticketRefusals = 0;
    if (resumed === null) {
      // A fresh session's stream numbers start again.
      this.lastSeq = 0;
      this.dropSessionState(reset ? "session reset" : "disconnected");
    }
    // A resumed session may not repeat its token; a fresh one without a token cannot be resumed.
    this.resumeToken = message.resume_token ?? (resumed !== null ? this.resumeToken : null);
    const reload = this.fromStorage;
    this.fromStorage = false;
    this.noteRejections(message.tools, true);
    this.setStatus({ status: "open", attempt: 0 });
    this.emit("ready", readyEvent(message));
    // After `ready`, so a page hears of its tools' refusals once it knows it is connected.
    this.emitRejections(message.tools);
    if (resumed !== null) this.onResumed(resumed, reload);
    if (reset) {
      this.transcript.reset(this.outgoing.filter((entry) => entry.sentOn === null).map((entry) => entry.turn));
      this.emit("reset", this.resetError ?? { code: "session_expired", message: "the server no longer had the session" });
    }
    this.save();
    this.syncNonce = null;
    if (resumed === null) {
      // Messages written to an earlier connection belonged to a session that is gone or ended
      // its runs with that connection; only those never sent are still owed.
      this.dropOutgoing(
        this.outgoing.filter((entry) => entry.sentOn !== null),
        "client_session_reset",
        "the session the message was sent to is gone",
      );
      this.knownRuns.clear();
    }
    // After a gap the snapshot comes next and may confirm some; it reconciles then.
    if (resumed === null || !resumed.gap) this.reconcile();
  }

  private onResumed(resumed: Resumed, reload: boolean): void {
    const pending = new Set(resumed.pending_calls ?? []);
    const resent: string[] = [];
    const outcomeUnknown: string[] = [];
    for (const [id, kept] of [...this.results]) {
      if (!pending.has(id)) {
        // The server has it: no longer waiting means the answer arrived (or the call ended).
        this.settled(id);
      } else if (this.transmit(kept.response)) {
        kept.sentOn = this.socket;
        resent.push(id);
      }
    }
    for (const [id, call] of [...this.interrupted]) {
      if (!pending.has(id)) {
        this.interrupted.delete(id);
      } else if (!this.mayRunAgain(call.name)) {
        // Its handler may or may not have taken effect; running it again could do it twice.
        this.interrupted.delete(id);
        this.keep(id, call.name, outcomeUnknownResponse(id));
        outcomeUnknown.push(id);
      }
      // One that may run again waits for its request, redelivered with the arguments.
    }
    for (const [id] of [...this.calls]) {
      // Timed out or cancelled while the link was down; its answer would be dropped.
      if (!pending.has(id)) this.abortCall(id, "ended while disconnected");
    }
    const asked = new Set(resumed.pending_approvals ?? []);
    for (const id of [...this.approvals.keys()]) {
      // Expired, cancelled or answered while the link was down.
      if (!asked.has(id)) this.closeApproval(id, "closed");
    }
    this.resumeRequests(asked, pending);
    this.emit("resumed", {
      fromSeq: resumed.from_seq,
      pendingCalls: [...pending],
      pendingApprovals: [...asked],
      gap: resumed.gap ?? false,
      reload,
      resent,
      outcomeUnknown,
    });
  }

  /** The session this client knew is gone (or was never resumable): nothing of it is owed. */
  private dropSessionState(reason: string): void {
    for (const id of [...this.calls.keys()]) this.abortCall(id, reason);
    for (const id of [...this.approvals.keys()]) this.closeApproval(id, "closed");
    this.failRequests("client_session_reset", `the session's calls are over: ${reason}`);
    this.interrupted.clear();
    this.results.clear();
    this.acknowledged.clear();
    this.endRun();
  }

  private forgetSession(): void {
    this.resumeToken = null;
    this.interrupted.clear();
    this.results.clear();
    this.remove(this.storageKey);
  }

  private endRun(): void {
    if (this.run === null) return;
    const runId = this.run;
    this.run = null;
    const event: RunCompleteEvent = { runId, reason: "disconnected", steps: 0, usage: null };
    this.transcript.complete(event);
    this.settleRun(runId, "disconnected", null);
    this.emit("runComplete", event);
  }

  private noteRejections(report: ToolsReport, replace: boolean): void {
    if (replace) this.rejected.clear();
    for (const name of report.accepted) this.rejected.delete(name);
    for (const item of report.rejected) this.rejected.set(item.name ?? "", item);
  }

  private emitRejections(report: ToolsReport): void {
    if (report.rejected.length > 0) this.emit("rejected", [...report.rejected]);
  }

  private onClosed(socket: WebSocketLike | null, code: number, reason: string): void {
    if (socket !== null && socket !== this.socket) return;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    }
    this.socket = null;
    this.greeted = false;
    this.clearWatchdog();
    // A ticket can lapse between its fetch and the handshake (it is good for seconds): one 4401
    // on a ticket earns one more try with a fresh one; a second means the page is not let in.
    const ticketLapsed = code === 4401 && this.usedTicket && this.ticketRefusals === 0;
    if (code === 4401 && this.usedTicket) this.ticketRefusals += 1;
    const final =
      this.closedByUser || this.reconnectOptions === false || (FINAL_CLOSE_CODES.has(code) && !ticketLapsed);
    if (this.resumeToken === null) {
      // The server ends a session it cannot resume with its connection: these calls are over.
      for (const id of [...this.calls.keys()]) this.abortCall(id, "disconnected");
      this.endRun();
    } else if (final) {
      // The server holds the session and its calls for a while, so a later connect() or a new page
      // may resume it; handlers stopped halfway are remembered as such, never silently re-run.
      for (const [id, call] of [...this.calls]) {
        this.abortCall(id, "disconnected");
        this.interrupted.set(id, { name: call.request.name, started: call.started });
      }
      this.endRun();
    }
    // Otherwise the run and the calls go on at the server; handlers finish and their results wait.
    this.save();
    if (final) {
      // Nobody will carry them to the server; a later connect() shows what is still open.
      this.failRequests("client_closed", "the connection was closed before the server took it");
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      this.setStatus({ status: "closed", attempt: this.attempt, code, reason });
      return;
    }
    const delayMs = this.backoff(this.attempt, code, reason);
    this.attempt += 1;
    this.setStatus({ status: "reconnecting", attempt: this.attempt, delayMs, code, reason });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delayMs);
  }

  private backoff(attempt: number, code: number, reason: string): number {
    const now = Date.now();
    if (code === 4429) {
      // Too many from this address: coming back early only earns another refusal. Wait as the
      // server asks, and up to a quarter more so clients refused together come back apart.
      const wait = Math.min(RATE_LIMITED_MAX_MS, Math.max(RATE_LIMITED_MIN_MS, retryHintMs(reason)));
      const delay = Math.round(wait + (this.random() * wait) / 4);
      this.rateLimitedUntil = now + delay;
      return delay;
    }
    this.rateLimitedUntil = 0;
    if (RESTART_CLOSE_CODES.has(code)) this.restartUntil = now + RESTART_WINDOW_MS;
    // A single drop is usually a blip (a hand-over, a proxy restart): try again at once.
    if (attempt === 0) return 0;
    const options = this.reconnectOptions as Required<ReconnectOptions>;
    let base = Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** (attempt - 1));
    // A server that said it is restarting is back within seconds: keep knocking often.
    if (now < this.restartUntil) base = Math.min(base, RESTART_DELAY_MS);
    return Math.round(base * (1 - options.jitter * this.random()));
  }

  /**
   * No frame for this long means the link is dead: the server pings every heartbeat interval, so
   * twice that (or interval + timeout, when the server allows more) is a ping missed for sure.
   */
  private deadLinkMs(): number {
    const limits = this.ready?.limits;
    if (!limits) return DEFAULT_DEAD_LINK_MS;
    const interval = limits.heartbeat_interval_ms;
    return Math.max(2 * interval, interval + (limits.heartbeat_timeout_ms ?? interval));
  }

  private armWatchdog(ms?: number): void {
    this.clearWatchdog();
    const deadLink = this.deadLinkMs();
    const wait = ms ?? (this.greeted ? deadLink : Math.min(deadLink, HANDSHAKE_TIMEOUT_MS));
    const socket = this.socket;
    this.watchdog = setTimeout(() => this.onDeadLink(socket, wait), wait);
    // Outside a browser, the watchdog alone must not keep a process alive.
    (this.watchdog as { unref?: () => void }).unref?.();
  }

  // The page ----------------------------------------------------------------------------------

  private listenToPage(): void {
    const on = (target: PageLike | null, type: string, listener: (event: unknown) => void) => {
      if (target === null) return;
      target.addEventListener(type, listener);
      this.pageListeners.push([target, type, listener]);
    };
    // The network or the page is back: a reconnect waiting out its backoff goes now, and a link
    // that looks open but may have died meanwhile (a laptop asleep, a phone in a pocket) is tested.
    on(this.page, "online", () => this.wake());
    on(this.visibility, "visibilitychange", () => {
      if (this.visibility?.visibilityState !== "hidden") this.wake();
    });
    on(this.page, "pageshow", (event) => {
      // Back from the back/forward cache: this page holds its session id again.
      if ((event as { persisted?: boolean }).persisted) {
        this.writePointer(true);
        this.wake();
      }
    });
    // The page is going (a reload, a navigation): the next page to load with this storage is
    // its successor, not a duplicate, and may take the id without asking.
    on(this.page, "pagehide", () => this.writePointer(false));
  }

  /** Reconnect now if waiting to, and check a link that has been quiet. */
  private wake(): void {
    if (this.closedByUser) return;
    if (this.timer !== null) {
      // The server asked for the wait after 4429; the page coming back changes nothing there.
      if (Date.now() < this.rateLimitedUntil) return;
      this.connect();
      return;
    }
    if (this.greeted && Date.now() - this.lastFrameAt > (this.ready?.limits.heartbeat_interval_ms ?? DEFAULT_DEAD_LINK_MS / 2)) {
      // Any frame proves the link alive, and the pong is one; none in time and it is dropped.
      this.transmit({ type: "ping", nonce: "wake" });
      this.armWatchdog(WAKE_PROBE_MS);
    }
  }

  // Session id per tab ------------------------------------------------------------------------

  private readPointer(): SessionPointer | null {
    if (this.sessionPointerKey === null) return null;
    const text = this.read(this.sessionPointerKey);
    if (text === null || text === "") return null;
    try {
      const parsed = JSON.parse(text) as SessionPointer;
      if (typeof parsed?.id === "string" && parsed.id !== "") return { id: parsed.id, held: parsed.held !== false };
    } catch {
      // An id stored by an earlier version, as plain text: its page is gone, so not held.
    }
    return { id: text, held: false };
  }

  private writePointer(held: boolean): void {
    if (this.sessionPointerKey === null) return;
    this.write(this.sessionPointerKey, JSON.stringify({ id: this.currentSessionId, held }));
  }

  private openChannel(Channel: ChannelFactory | null): void {
    if (Channel === null) return;
    try {
      this.channel = new Channel(CHANNEL_NAME);
    } catch {
      return;
    }
    // Outside a browser an open channel would keep the process alive.
    (this.channel as { unref?: () => void }).unref?.();
    this.channel.onmessage = (event) => {
      const data = event.data as { type?: string; key?: string; id?: string; nonce?: string } | null;
      if (data?.type !== "probe" || data.key !== this.sessionPointerKey || data.id !== this.currentSessionId) return;
      // Asked by a tab that loaded with a copy of this tab's storage: the id is taken.
      this.channel?.postMessage({ type: "held", key: data.key, id: data.id, nonce: data.nonce });
    };
  }

  /** Whether another live tab holds this session id; no answer in time means none does. */
  private probe(id: string): Promise<boolean> {
    const channel = this.channel;
    if (channel === null) return Promise.resolve(false);
    const nonce = newSessionId();
    return new Promise<boolean>((resolve) => {
      const answer = channel.onmessage;
      const timer = setTimeout(() => finish(false), CLAIM_PROBE_MS);
      const finish = (taken: boolean) => {
        clearTimeout(timer);
        channel.onmessage = answer;
        resolve(taken);
      };
      channel.onmessage = (event) => {
        const data = event.data as { type?: string; nonce?: string } | null;
        if (data?.type === "held" && data.nonce === nonce) finish(true);
        else answer?.(event);
      };
      channel.postMessage({ type: "probe", key: this.sessionPointerKey, id, nonce });
    });
  }

  /** This tab is a duplicate: it gets a session of its own, and nothing of the other's. */
  private takeNewSessionId(): void {
    // The copy of the other tab's saved state belongs to that tab's session.
    this.remove(this.storageKey);
    this.currentSessionId = newSessionId();
    this.currentUrl = socketUrl(this.baseUrl, this.currentSessionId);
    this.storageKey = `${STORAGE_PREFIX}:${this.currentSessionId}:${this.currentUrl}`;
    this.writePointer(true);
  }

  private clearWatchdog(): void {
    if (this.watchdog !== null) clearTimeout(this.watchdog);
    this.watchdog = null;
  }

  private onDeadLink(socket: WebSocketLike | null, ms: number): void {
    this.watchdog = null;
    if (socket === null || socket !== this.socket) return;
    // A half-open link never delivers its close either, so the client leaves it without waiting.
    try {
      socket.close(4000, "dead link");
    } catch {
      // Closing a socket that never opened may throw; it is being abandoned either way.
    }
    this.onClosed(socket, 1006, `no frame from the server for ${ms} ms`);
  }

  private abortCall(id: string, reason: string): void {
    const call = this.calls.get(id);
    if (!call) return;
    this.calls.delete(id);
    call.controller.abort(new ToolCancelled(reason));
  }

  /** The server has the call's outcome: the kept result, if any, is no longer needed. */
  private settled(id: string): void {
    this.results.delete(id);
    this.interrupted.delete(id);
    this.acknowledged.add(id);
    if (this.acknowledged.size > ACKNOWLEDGED_MEMORY) {
      this.acknowledged.delete(this.acknowledged.values().next().value as string);
    }
  }

  /** Keep a result until acknowledged, and send it now when the connection is ready. */
  private keep(id: string, name: string, response: ToolResponseMessage): void {
    const kept: Kept = { name, response, sentOn: null };
    this.results.set(id, kept);
    // Stored before it is sent: a reload right after the send must still be able to resend it.
    this.save();
    if (this.greeted && this.transmit(response)) kept.sentOn = this.socket;
  }

  // Approvals and cancels ---------------------------------------------------------------------

  private onApprovalRequest(message: ApprovalRequestMessage): void {
    const id = message.id;
    // Asked again after a reconnect: this page already shows it, and its object still works.
    if (this.approvals.has(id) || this.closedApprovals.has(id)) return;
    const controller = new AbortController();
    const approval: OpenApproval = {
      message,
      controller,
      state: "open",
      answered: false,
      handle: undefined as unknown as ApprovalRequest,
    };
    const respond = (response: ApprovalResponseMessage): Promise<void> => this.respond(approval, response);
    approval.handle = {
      id,
      runId: message.run_id,
      name: message.name,
      arguments: message.arguments ?? {},
      reason: message.reason,
      expiresAt: message.expires_at,
      redelivered: message.redelivered ?? false,
      get state() {
        return approval.state;
      },
      signal: controller.signal,
      approve: (options = {}) => {
        const response: ApprovalResponseMessage = { type: "approval_response", id, decision: "approve" };
        if (options.arguments !== undefined) response.arguments = options.arguments;
        if (options.remember !== undefined) response.remember = options.remember;
        return respond(response);
      },
      deny: (reason) => {
        const response: ApprovalResponseMessage = { type: "approval_response", id, decision: "deny" };
        if (reason) response.reason = reason.slice(0, 4096);
        return respond(response);
      },
    };
    this.approvals.set(id, approval);
    this.transcript.approvalRequest(approval.handle);
    this.emit("approvalRequest", approval.handle);
  }

  private respond(approval: OpenApproval, response: ApprovalResponseMessage): Promise<void> {
    const id = approval.message.id;
    if (approval.state !== "open") {
      const message =
        approval.state === "answering" ? `an answer to ${id} is already on its way` : `the approval request ${id} is over (${approval.state})`;
      return Promise.reject(new BridgeError("unknown_approval", message, id));
    }
    approval.state = "answering";
    this.transcript.approvalState(id, "answering");
    return new Promise<void>((resolve, reject) => {
      this.ask({
        kind: "approval",
        id,
        message: response,
        sentOn: null,
        nonce: null,
        resolve: () => {
          if (approval.state === "answering") {
            this.closeApproval(id, response.decision === "approve" ? "approved" : "denied");
          }
          resolve();
        },
        reject: (error) => {
          // The edit did not match the schema: the question is still open, so answer again.
          if (approval.state === "answering") {
            if (error.code === "invalid_arguments") {
              approval.state = "open";
              this.transcript.approvalState(id, "open");
            } else {
              this.closeApproval(id, "closed");
            }
          }
          reject(error);
        },
      });
    });
  }

  /** End an open approval request (once); its signal aborts unless this page had answered it. */
  private closeApproval(id: string, outcome: ApprovalOutcome): void {
    const approval = this.approvals.get(id);
    if (!approval) return;
    this.approvals.delete(id);
    this.closedApprovals.add(id);
    if (this.closedApprovals.size > ACKNOWLEDGED_MEMORY) {
      this.closedApprovals.delete(this.closedApprovals.values().next().value as string);
    }
    approval.state = outcome;
    this.transcript.approvalState(id, outcome);
    if (!approval.answered) approval.controller.abort(new Error(`the approval request is over: ${outcome}`));
    this.emit("approvalSettled", { id, outcome });
  }

  private ask(request: Request): void {
    if (this.closedByUser) {
      request.reject(new BridgeError("client_closed", "the client is closed; call connect() first", request.id));
      return;
    }
    this.requests.push(request);
    // Otherwise it goes out once the connection is back, if the call is still open then.
    if (this.greeted) this.dispatch(request);
  }

  private dispatch(request: Request): void {
    if (!this.transmit(request.message)) return;
    request.sentOn = this.socket;
    if (request.kind === "approval") {
      const approval = this.approvals.get(request.id);
      if (approval) approval.answered = true;
    }
    this.confirmations += 1;
    request.nonce = `confirm-${this.confirmations}`;
    this.transmit({ type: "ping", nonce: request.nonce });
  }

  private onConfirmed(nonce: string | null): void {
    if (nonce === null) return;
    const index = this.requests.findIndex((request) => request.nonce === nonce);
    if (index < 0) return;
    const [request] = this.requests.splice(index, 1);
    request!.resolve();
  }

  private onRefused(error: ErrorMessage): void {
    const codes: Record<Request["kind"], string[]> = {
      approval: ["unknown_approval", "invalid_arguments", "invalid_message"],
      cancel: ["unknown_call", "invalid_message"],
    };
    // The server names the call in most refusals; where it does not, the oldest request of the
    // kind in flight on this socket is the one refused, since refusals come back in order.
    const index = this.requests.findIndex(
      (request) =>
        request.nonce !== null &&
        request.sentOn === this.socket &&
        codes[request.kind].includes(error.code) &&
        (error.id === request.id || ((error.id ?? null) === null && error.code !== "invalid_arguments")),
    );
    if (index < 0) return;
    const [request] = this.requests.splice(index, 1);
    request!.reject(new BridgeError(error.code, error.message, request!.id));
  }

  /** After a resume: send again what the old connection may have lost, if it is still open. */
  private resumeRequests(asked: Set<string>, pending: Set<string>): void {
    for (const request of [...this.requests]) {
      if (request.sentOn === this.socket) continue;
      const open = request.kind === "approval" ? asked.has(request.id) : pending.has(request.id) || asked.has(request.id);
      if (open) {
        this.dispatch(request);
        continue;
      }
      this.requests.splice(this.requests.indexOf(request), 1);
      if (request.sentOn !== null) {
        // Written to a connection that died, and the call is no longer open: the server took it,
        // or the call ended on its own; the toolResult event tells which.
        request.resolve();
      } else if (request.kind === "approval") {
        request.reject(new BridgeError("unknown_approval", "the approval request ended while the connection was down", request.id));
      } else {
        // Ended already: what the cancel asked for has happened.
        request.resolve();
      }
    }
  }

  private failRequests(code: BridgeErrorCode, message: string): void {
    const requests = this.requests;
    this.requests = [];
    for (const request of requests) request.reject(new BridgeError(code, message, request.id));
  }

  private mayRunAgain(name: string): boolean {
    const tool = this.tools.get(name);
    return Boolean(tool && (tool.readOnly || tool.idempotent));
  }

  private async answer(request: ToolRequestMessage): Promise<void> {
    const id = request.id;
    // The same id again is a redelivery of a call that is already being answered.
    if (this.calls.has(id)) return;
    const kept = this.results.get(id);
    if (kept) {
      if (kept.sentOn !== this.socket && this.transmit(kept.response)) kept.sentOn = this.socket;
      return;
    }
    if (this.acknowledged.has(id)) return;
    const interrupted = this.interrupted.get(id);
    if (interrupted) {
      this.interrupted.delete(id);
      if (!this.mayRunAgain(request.name)) {
        this.keep(id, request.name, outcomeUnknownResponse(id));
        return;
      }
    }
    const controller = new AbortController();
    this.calls.set(id, { controller, request, started: Date.now() });
    // On record before the handler can have any effect, so a reload knows it began.
    this.save();
    const event = toolRequestEvent(request);
    this.transcript.toolRequest(event);
    this.emit("toolRequest", event);
    const signal = controller.signal;
    const context: ToolContext = {
      id,
      runId: request.run_id,
      name: request.name,
      timeoutMs: request.timeout_ms,
      interactive: request.interactive ?? false,
      rerun: interrupted !== undefined,
      signal,
      reportProgress: (progress, message) => this.progress(id, signal, progress, message),
      deny: (message) => {
        throw new ToolDenied(message);
      },
    };
    let response: ToolResponseMessage;
    try {
      const tool = this.tools.get(request.name);
      if (!tool) {
        throw new ToolCallError(`this page has no tool named ${request.name}`, "unknown_tool");
      }
      const value: unknown = await tool.handler(request.arguments ?? {}, context);
      response = { type: "tool_response", id, status: "ok", result: value ?? null };
    } catch (error) {
      response = failure(id, error);
    }
    if (signal.aborted || this.calls.get(id)?.controller !== controller) return;
    this.calls.delete(id);
    try {
      JSON.stringify(response);
    } catch (error) {
      // Most likely a result JSON cannot encode (a cycle, a BigInt): the server still needs an answer.
      response = failure(id, new ToolCallError(`result is not JSON: ${describe(error)}`, "unserializable_result"));
    }
    this.keep(id, request.name, response);
  }

  private progress(
    id: string,
    signal: AbortSignal,
    progress?: number | null,
    message?: string | null,
  ): void {
    if (signal.aborted) return;
    const event: ToolProgressEvent = { id };
    if (typeof progress === "number" && Number.isFinite(progress)) {
      event.progress = Math.min(1, Math.max(0, progress));
    }
    if (typeof message === "string") event.message = message.slice(0, 4096);
    this.transmit({ type: "tool_progress", ...event });
    this.transcript.progress(id, event.progress ?? null, event.message ?? null);
    this.emit("toolProgress", event);
  }

  // Storage ---------------------------------------------------------------------------------

  private restore(): void {
    const text = this.read(this.storageKey);
    if (text === null) return;
    let saved: SavedSession;
    try {
      saved = JSON.parse(text) as SavedSession;
    } catch {
      this.remove(this.storageKey);
      return;
    }
    if (saved?.v !== 1 || saved.sessionId !== this.sessionId || typeof saved.token !== "string") return;
    this.resumeToken = saved.token;
    this.fromStorage = true;
    // Replay only helps a page that kept what it showed; otherwise the server sends it all again.
    if (this.afterReload === "replay" && Number.isInteger(saved.lastSeq)) this.lastSeq = saved.lastSeq;
    for (const call of saved.calls ?? []) {
      this.interrupted.set(call.id, { name: call.name, started: call.started });
    }
    for (const result of saved.results ?? []) {
      this.results.set(result.id, { name: result.name, response: result.response, sentOn: null });
    }
  }

  private save(): void {
    if (this.storage === null) return;
    if (this.resumeToken === null) {
      this.remove(this.storageKey);
      return;
    }
    const calls = [...this.calls].map(([id, call]) => ({ id, name: call.request.name, started: call.started }));
    for (const [id, call] of this.interrupted) calls.push({ id, name: call.name, started: call.started });
    const saved: SavedSession = {
      v: 1,
      sessionId: this.sessionId,
      token: this.resumeToken,
      lastSeq: this.lastSeq,
      calls,
      results: [...this.results].map(([id, kept]) => ({ id, name: kept.name, response: kept.response })),
    };
    this.write(this.storageKey, JSON.stringify(saved));
  }

  private read(key: string): string | null {
    try {
      return this.storage?.getItem(key) ?? null;
    } catch {
      return null;
    }
  }

  private write(key: string, value: string): void {
    try {
      this.storage?.setItem(key, value);
    } catch (error) {
      // Full or forbidden: the session still works, it just cannot survive a reload.
      if (!this.storageFailed) {
        this.storageFailed = true;
        this.emit("error", { code: "client_storage_failed", message: describe(error), id: null, runId: null });
      }
    }
  }

  private remove(key: string): void {
    try {
      this.storage?.removeItem(key);
    } catch {
      // Nothing to do: what could not be removed will fail to resume and be replaced.
    }
  }
}

function approvalOutcome(status: ToolResultMessage["status"]): ApprovalOutcome {
  switch (status) {
    case "denied":
      return "denied";
    case "approval_expired":
      return "expired";
    case "cancelled":
      return "cancelled";
    default:
      // Any other result means the call was let through and ran.
      return "approved";
  }
}

function outcomeUnknownResponse(id: string): ToolResponseMessage {
  return {
    type: "tool_response",
    id,
    status: "outcome_unknown",
    error: { message: "the page was reloaded while the tool ran; whether it took effect is unknown" },
  };
}

function failure(id: string, error: unknown): ToolResponseMessage {
  if (error instanceof ToolDenied) {
    return { type: "tool_response", id, status: "denied", error: { message: error.message } };
  }
  const code = error instanceof ToolCallError ? error.code : errorName(error);
  return {
    type: "tool_response",
    id,
    status: "error",
    error: code ? { message: describe(error), code } : { message: describe(error) },
  };
}

function errorName(error: unknown): string | undefined {
  // DOMExceptions (NotAllowedError, SecurityError, ...) name the failure better than their text.
  if (error instanceof Error && error.name && error.name !== "Error") return error.name;
  return undefined;
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

export function toWire(tool: ToolRegistration<any, any>): WireToolDefinition {
  const wire: WireToolDefinition = {
    name: tool.name,
    description: tool.description ?? "",
    parameters: tool.parameters ?? { type: "object", properties: {} },
  };
  if (tool.outputSchema !== undefined) wire.output_schema = tool.outputSchema;
  if (tool.timeoutMs !== undefined) wire.timeout_ms = tool.timeoutMs;
  if (tool.interactive) wire.interactive = true;
  if (tool.readOnly) wire.read_only = true;
  if (tool.destructive) wire.destructive = true;
  if (tool.idempotent) wire.idempotent = true;
  if (tool.untrustedContent) wire.untrusted_content = true;
  return wire;
}

function defaultStorage(): StorageLike | null {
  try {
    // Reading it throws where storage is forbidden (sandboxed frames, some privacy modes).
    return (globalThis as { sessionStorage?: StorageLike }).sessionStorage ?? null;
  } catch {
    return null;
  }
}

function socketUrl(url: string, sessionId: string | null): string {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const parsed = base ? new URL(url, base) : new URL(url);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  if (sessionId !== null) {
    parsed.pathname = `${parsed.pathname.replace(/\/+$/, "")}/ws/agent/${encodeURIComponent(sessionId)}`;
  }
  return parsed.toString();
}

function withQuery(url: string, name: string, value: string): string {
  // Browsers cannot set headers on a WebSocket handshake, so credentials ride in the query.
  const parsed = new URL(url);
  parsed.searchParams.set(name, value);
  return parsed.toString();
}

/** The wait a `4429` close reason asks for ("...; retry in 12 s"), in ms; 0 when it names none. */
export function retryHintMs(reason: string): number {
  const match = RETRY_IN.exec(reason);
  if (match === null) return 0;
  return match[1] !== undefined ? Math.ceil(Number(match[1]) * 1000) : 60_000;
}

function webSocketImpl(given: WebSocketFactory | null): WebSocketFactory {
  const impl = given ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
  if (!impl) throw new Error("no WebSocket implementation: pass options.WebSocket");
  return impl;
}

function defaultPage(which: "window" | "document"): PageLike | null {
  const target = (globalThis as Record<string, unknown>)[which] as PageLike | undefined;
  return target && typeof target.addEventListener === "function" ? target : null;
}

/**
 * `fetchTicket`'s error when the server answered but gave no ticket: `status` is its HTTP status
 * (401: the credentials were refused, so asking again with the same ones cannot help).
 */
export class TicketError extends Error {
  readonly status: number;

  constructor(message: string, status: number) {
    super(message);
    this.name = "TicketError";
    this.status = status;
  }
}

/**
 * A ticket for `AgentBridge`'s `ticket` option: `POST {server}/ws-ticket` with the page's own
 * credentials (its cookies, or the headers given), and the ticket from the answer. Throws a
 * `TicketError` when the server refuses (a network failure throws as `fetch` does).
 */
export async function fetchTicket(server: string, init: RequestInit = {}): Promise<string> {
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const url = new URL("ws-ticket", (base ? new URL(server, base) : new URL(server)).href.replace(/\/?$/, "/"));
  if (url.protocol === "ws:") url.protocol = "http:";
  if (url.protocol === "wss:") url.protocol = "https:";
  const response = await fetch(url, { method: "POST", credentials: "include", ...init });
  if (!response.ok) throw new TicketError(`POST ${url.pathname} answered ${response.status}`, response.status);
  const body = (await response.json()) as { ticket?: unknown };
  if (typeof body.ticket !== "string") throw new Error("the ticket answer has no ticket");
  return body.ticket;
}

function newSessionId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  return `s-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
