// The browser side of the bridge: one WebSocket per session, tools answered in the page.

import type {
  ClientMessage,
  CompleteMessage,
  ErrorMessage,
  Limits,
  ReadyMessage,
  RejectedTool,
  RunStartedMessage,
  ServerMessage,
  TokenMessage,
  ToolCancelMessage,
  ToolRequestMessage,
  ToolResponseMessage,
  ToolResultMessage,
  ToolsReport,
  ToolsUpdatedMessage,
} from "./protocol.js";

export const PROTOCOL_VERSION = 1;

/** JSON Schema, as a plain object. */
export type JsonSchema = Record<string, unknown>;

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
}

export interface ToolContext {
  /** The call id the server correlates the response with. */
  readonly id: string;
  readonly runId: string;
  readonly name: string;
  readonly timeoutMs: number;
  readonly interactive: boolean;
  /** Aborts when the server cancels the call (`tool_cancel`), or the connection drops. */
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
  readOnly?: boolean;
  destructive?: boolean;
  handler: ToolHandler<A, R>;
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

/** Errors from the server (`error` messages) and from the client itself (code `client_*`). */
export interface BridgeErrorEvent {
  code: string;
  message: string;
  id?: string | null;
  run_id?: string | null;
}

export interface AgentBridgeEvents {
  status: StatusEvent;
  ready: ReadyMessage;
  toolsUpdated: ToolsUpdatedMessage;
  /** Tools the server refused, with its validation errors; fired when there are any. */
  rejected: RejectedTool[];
  runStart: RunStartedMessage;
  token: TokenMessage;
  toolRequest: ToolRequestMessage;
  toolProgress: ToolProgressEvent;
  toolCancel: ToolCancelMessage;
  toolResult: ToolResultMessage;
  runComplete: CompleteMessage;
  error: BridgeErrorEvent;
  /** Every server message, after the specific event. */
  message: ServerMessage;
}

export type Listener<T> = (event: T) => void;

export interface ReconnectOptions {
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

export interface AgentBridgeOptions {
  token?: string;
  /** Appended to the URL as /ws/agent/{sessionId} unless the URL already names a session. */
  sessionId?: string;
  clientName?: string;
  /** Connect in the constructor (default true); otherwise call `connect()`. */
  autoConnect?: boolean;
  /** `false` turns reconnecting off. */
  reconnect?: ReconnectOptions | false;
  WebSocket?: WebSocketFactory;
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
// Retrying cannot help: the token is wrong, another tab now owns the session, or the server
// refuses what this client is (bad session id, unsupported protocol).
const FINAL_CLOSE_CODES = new Set([1008, 4401, 4403, 4409]);
const SESSION_IN_PATH = /\/ws\/agent\/([^/]+)\/?$/;

interface Call {
  controller: AbortController;
  request: ToolRequestMessage;
}

export class AgentBridge {
  readonly url: string;
  readonly sessionId: string;
  private readonly token: string | undefined;
  private readonly clientName: string;
  private readonly reconnectOptions: Required<ReconnectOptions> | false;
  private readonly WebSocketImpl: WebSocketFactory;
  private readonly random: () => number;
  private readonly tools = new Map<string, ToolRegistration<any, any>>();
  private readonly listeners = new Map<keyof AgentBridgeEvents, Set<Listener<any>>>();
  private readonly calls = new Map<string, Call>();
  private readonly outbox: ClientMessage[] = [];
  private readonly rejected = new Map<string, RejectedTool>();
  private socket: WebSocketLike | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private attempt = 0;
  private closedByUser = false;
  private currentStatus: ConnectionStatus = "idle";
  private run: string | null = null;
  private ready: ReadyMessage | null = null;
  /** Sequence number of the last server message seen. */
  lastSeq = 0;

  constructor(url: string, options: AgentBridgeOptions = {}) {
    const found = SESSION_IN_PATH.exec(url.split(/[?#]/)[0] ?? "");
    this.sessionId = options.sessionId ?? (found ? decodeURIComponent(found[1]!) : newSessionId());
    this.url = socketUrl(url, found ? null : this.sessionId);
    this.token = options.token;
    this.clientName = options.clientName ?? "agent-bridge-js";
    this.reconnectOptions =
      options.reconnect === false ? false : { ...DEFAULT_RECONNECT, ...options.reconnect };
    const impl = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!impl) throw new Error("no WebSocket implementation: pass options.WebSocket");
    this.WebSocketImpl = impl;
    this.random = options.random ?? Math.random;
    if (options.autoConnect !== false) {
      // Deferred so the page can register tools and listeners first and they go in the hello.
      queueMicrotask(() => {
        if (this.currentStatus === "idle") this.connect();
      });
    }
  }

  // State -----------------------------------------------------------------------------------

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

  get limits(): Limits | null {
    return this.ready?.limits ?? null;
  }

  /** The run in progress, if any. */
  get runId(): string | null {
    return this.run;
  }

  get toolNames(): string[] {
    return [...this.tools.keys()];
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

  /** Add a tool; sent in the next hello, or at once when connected. Returns its remover. */
  registerTool<A = Record<string, unknown>, R = unknown>(tool: ToolRegistration<A, R>): () => void {
    this.registerTools([tool as ToolRegistration<any, any>]);
    return () => this.unregisterTool(tool.name);
  }

  registerTools(tools: Iterable<ToolRegistration<any, any>>): void {
    const added: ToolRegistration<any, any>[] = [];
    const names = new Set<string>();
    for (const tool of tools) {
      if (this.tools.has(tool.name) || names.has(tool.name)) {
        throw new Error(`a tool named ${tool.name} is already registered`);
      }
      names.add(tool.name);
      if (typeof tool.handler !== "function") throw new TypeError(`tool ${tool.name} has no handler`);
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
    if (this.socket) return;
    this.setStatus({ status: this.attempt > 0 ? "reconnecting" : "connecting", attempt: this.attempt });
    const url = this.token ? withToken(this.url, this.token) : this.url;
    let socket: WebSocketLike;
    try {
      socket = new this.WebSocketImpl(url);
    } catch (error) {
      this.emit("error", { code: "client_connect_failed", message: describe(error) });
      this.onClosed(null, 1006, "");
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      this.transmit({
        type: "hello",
        protocol: PROTOCOL_VERSION,
        tools: this.definitions() as unknown as Record<string, unknown>[],
        client: this.clientName,
      });
    };
    socket.onmessage = (event) => this.receive(socket, event.data);
    socket.onclose = (event) => this.onClosed(socket, event.code, event.reason);
    // `error` is always followed by `close`, which carries what there is to know.
    socket.onerror = () => undefined;
  }

  /** Close for good: no reconnect until `connect()` is called again. */
  close(code = 1000, reason = "client closed"): void {
    this.closedByUser = true;
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

  // Runs ------------------------------------------------------------------------------------

  /** Send a user message; queued until the connection is ready when it is not yet. */
  send(text: string): void {
    const message: ClientMessage = { type: "message", content: text };
    if (this.currentStatus === "open") this.transmit(message);
    else this.outbox.push(message);
  }

  /** Stop the current run; false when there is no connection to send it on. */
  stop(): boolean {
    this.outbox.length = 0;
    if (this.currentStatus !== "open") return false;
    this.transmit({ type: "stop" });
    return true;
  }

  // Internals -------------------------------------------------------------------------------

  private transmit(message: ClientMessage): boolean {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    socket.send(JSON.stringify(message));
    return true;
  }

  private setStatus(event: StatusEvent): void {
    this.currentStatus = event.status;
    this.emit("status", event);
  }

  private receive(socket: WebSocketLike, data: unknown): void {
    if (socket !== this.socket) return;
    let message: ServerMessage;
    try {
      message = JSON.parse(String(data)) as ServerMessage;
    } catch (error) {
      this.emit("error", { code: "client_invalid_frame", message: `unreadable frame: ${describe(error)}` });
      return;
    }
    if (typeof message.seq === "number") this.lastSeq = message.seq;
    switch (message.type) {
      case "ping":
        this.transmit({ type: "pong", nonce: message.nonce ?? null });
        break;
      case "ready":
        this.onReady(message);
        break;
      case "tools_updated":
        this.noteRejections(message.tools, false);
        this.emit("toolsUpdated", message);
        break;
      case "run_started":
        this.run = message.run_id;
        this.emit("runStart", message);
        break;
      case "token":
        this.emit("token", message);
        break;
      case "tool_request":
        void this.answer(message);
        break;
      case "tool_cancel":
        this.cancelCall(message.id, message.reason);
        this.emit("toolCancel", message);
        break;
      case "tool_result":
        this.emit("toolResult", message);
        break;
      case "complete":
        if (this.run === message.run_id) this.run = null;
        this.emit("runComplete", message);
        break;
      case "error":
        this.emit("error", message as ErrorMessage);
        break;
      case "pong":
        break;
      default:
        // A newer server may add messages; they still reach `message` listeners.
        break;
    }
    this.emit("message", message);
  }

  private onReady(message: ReadyMessage): void {
    this.ready = message;
    this.attempt = 0;
    this.noteRejections(message.tools, true);
    this.setStatus({ status: "open", attempt: 0 });
    this.emit("ready", message);
    const queued = this.outbox.splice(0);
    for (const item of queued) this.transmit(item);
  }

  private noteRejections(report: ToolsReport, replace: boolean): void {
    if (replace) this.rejected.clear();
    for (const name of report.accepted) this.rejected.delete(name);
    for (const item of report.rejected) this.rejected.set(item.name ?? "", item);
    if (report.rejected.length > 0) this.emit("rejected", report.rejected);
  }

  private onClosed(socket: WebSocketLike | null, code: number, reason: string): void {
    if (socket !== null && socket !== this.socket) return;
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = socket.onerror = null;
    }
    this.socket = null;
    // The server has already ended these calls; whatever the handlers produce now has nowhere
    // to go, so they are told to stop.
    for (const id of [...this.calls.keys()]) this.cancelCall(id, "disconnected");
    if (this.run !== null) {
      const runId = this.run;
      this.run = null;
      this.emit("runComplete", { type: "complete", run_id: runId, reason: "disconnected", steps: 0 });
    }
    if (this.closedByUser || this.reconnectOptions === false || FINAL_CLOSE_CODES.has(code)) {
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      this.setStatus({ status: "closed", attempt: this.attempt, code, reason });
      return;
    }
    const delayMs = this.backoff(this.attempt);
    this.attempt += 1;
    this.setStatus({ status: "reconnecting", attempt: this.attempt, delayMs, code, reason });
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, delayMs);
  }

  private backoff(attempt: number): number {
    const options = this.reconnectOptions as Required<ReconnectOptions>;
    const base = Math.min(options.maxDelayMs, options.initialDelayMs * options.factor ** attempt);
    return Math.round(base * (1 - options.jitter * this.random()));
  }

  private cancelCall(id: string, reason: string): void {
    const call = this.calls.get(id);
    if (!call) return;
    this.calls.delete(id);
    call.controller.abort(new DOMException(`tool call cancelled: ${reason}`, "AbortError"));
  }

  private async answer(request: ToolRequestMessage): Promise<void> {
    // The same id again is a redelivery of a call that is already being answered.
    if (this.calls.has(request.id)) return;
    const controller = new AbortController();
    this.calls.set(request.id, { controller, request });
    this.emit("toolRequest", request);
    const signal = controller.signal;
    const context: ToolContext = {
      id: request.id,
      runId: request.run_id,
      name: request.name,
      timeoutMs: request.timeout_ms,
      interactive: request.interactive ?? false,
      signal,
      reportProgress: (progress, message) => this.progress(request.id, signal, progress, message),
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
      response = { type: "tool_response", id: request.id, status: "ok", result: value ?? null };
    } catch (error) {
      response = failure(request.id, error);
    }
    if (signal.aborted || this.calls.get(request.id)?.controller !== controller) return;
    this.calls.delete(request.id);
    try {
      this.transmit(response);
    } catch (error) {
      // Most likely a result JSON cannot encode (a cycle, a BigInt): the server still needs an answer.
      this.transmit(failure(request.id, new ToolCallError(`result is not JSON: ${describe(error)}`, "unserializable_result")));
    }
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
    this.emit("toolProgress", event);
  }
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
  return wire;
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

function withToken(url: string, token: string): string {
  // Browsers cannot set headers on a WebSocket handshake, so the token rides in the query.
  const parsed = new URL(url);
  parsed.searchParams.set("token", token);
  return parsed.toString();
}

function newSessionId(): string {
  const crypto = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (crypto?.randomUUID) return crypto.randomUUID();
  return `s-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
}
