import type { CompleteMessage, Limits, ReadyMessage, RejectedTool, RunStartedMessage, ServerMessage, TokenMessage, ToolCancelMessage, ToolRequestMessage, ToolResultMessage, ToolsUpdatedMessage } from "./protocol.js";
export declare const PROTOCOL_VERSION = 1;
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
export type ToolHandler<A = Record<string, unknown>, R = unknown> = (args: A, context: ToolContext) => R | Promise<R>;
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
export declare class ToolDenied extends Error {
    constructor(message?: string);
}
/** Throw from a handler to send an error with a machine-readable code. */
export declare class ToolCallError extends Error {
    readonly code: string | undefined;
    constructor(message: string, code?: string);
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
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
    onclose: ((event: {
        code: number;
        reason: string;
    }) => void) | null;
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
export declare class AgentBridge {
    readonly url: string;
    readonly sessionId: string;
    private readonly token;
    private readonly clientName;
    private readonly reconnectOptions;
    private readonly WebSocketImpl;
    private readonly random;
    private readonly tools;
    private readonly listeners;
    private readonly calls;
    private readonly outbox;
    private readonly rejected;
    private socket;
    private timer;
    private attempt;
    private closedByUser;
    private currentStatus;
    private run;
    private ready;
    /** Sequence number of the last server message seen. */
    lastSeq: number;
    constructor(url: string, options?: AgentBridgeOptions);
    get status(): ConnectionStatus;
    /** Tools the server refused, by name, with its reasons. */
    get rejectedTools(): RejectedTool[];
    get serverTools(): string[];
    get limits(): Limits | null;
    /** The run in progress, if any. */
    get runId(): string | null;
    get toolNames(): string[];
    on<K extends keyof AgentBridgeEvents>(type: K, listener: Listener<AgentBridgeEvents[K]>): () => void;
    off<K extends keyof AgentBridgeEvents>(type: K, listener: Listener<AgentBridgeEvents[K]>): void;
    private emit;
    /** Add a tool; sent in the next hello, or at once when connected. Returns its remover. */
    registerTool<A = Record<string, unknown>, R = unknown>(tool: ToolRegistration<A, R>): () => void;
    registerTools(tools: Iterable<ToolRegistration<any, any>>): void;
    unregisterTool(name: string): boolean;
    /** The definitions as the server receives them. */
    definitions(): WireToolDefinition[];
    connect(): void;
    /** Close for good: no reconnect until `connect()` is called again. */
    close(code?: number, reason?: string): void;
    /** Send a user message; queued until the connection is ready when it is not yet. */
    send(text: string): void;
    /** Stop the current run; false when there is no connection to send it on. */
    stop(): boolean;
    private transmit;
    private setStatus;
    private receive;
    private onReady;
    private noteRejections;
    private onClosed;
    private backoff;
    private cancelCall;
    private answer;
    private progress;
}
export declare function toWire(tool: ToolRegistration<any, any>): WireToolDefinition;
