import type { RejectedTool, ServerMessage } from "./protocol.js";
import { type BridgeErrorCode, type BridgeErrorEvent, type BridgeLimits, type CompleteReason, type ReadyEvent, type RunCompleteEvent, type RunStartEvent, type SnapshotEvent, type StepRetryEvent, type TokenEvent, type TokenUsage, type ToolCancelEvent, type ToolRequestEvent, type ToolResultEvent, type ToolsUpdatedEvent } from "./events.js";
import type { FromSchema, JsonSchema, ObjectSchema } from "./schema.js";
import { type ChangeEvent, type Turn } from "./transcript.js";
export type { FromSchema, JsonSchema, ObjectSchema } from "./schema.js";
export type * from "./events.js";
export type * from "./transcript.js";
export declare const PROTOCOL_VERSION = 1;
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
export type ToolHandler<A = Record<string, unknown>, R = unknown> = (args: A, context: ToolContext) => R | Promise<R>;
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
export interface ToolDefinition<P extends ObjectSchema, R = unknown> extends Omit<ToolRegistration<FromSchema<P>, R>, "parameters" | "handler"> {
    parameters: P;
    handler: ToolHandler<FromSchema<P>, R>;
}
/**
 * A tool with its handler's arguments typed from its `parameters`, written as a literal in the
 * call (or declared elsewhere `as const`): `{type: "object", properties: {city: {type: "string"}},
 * required: ["city"]}` gives `{city: string}`, and a property the schema does not have is a
 * compile error. Checked like `registerTool` checks, at once; returns the tool unchanged.
 */
export declare function defineTool<const P extends ObjectSchema, R = unknown>(tool: ToolDefinition<P, R>): ToolRegistration<FromSchema<P>, R> & {
    parameters: P;
};
/** Throws a TypeError when the server would refuse the tool, or it cannot work at all. */
export declare function checkTool(tool: ToolRegistration<any, any>): void;
/** Throw from a handler (or call `context.deny()`) when the person refused. */
export declare class ToolDenied extends Error {
    constructor(message?: string);
}
/** Throw from a handler to send an error with a machine-readable code. */
export declare class ToolCallError extends Error {
    readonly code: string | undefined;
    constructor(message: string, code?: string);
}
/** The abort reason a handler's signal carries when its call is cancelled. */
export declare class ToolCancelled extends Error {
    /** The server's reason (`by_user`, `stopped`, `timed_out`, ...) or the client's own. */
    readonly reason: string;
    constructor(reason: string);
}
/** The server refused something this client asked for (an approval answer, a cancel, a message). */
export declare class BridgeError extends Error {
    /** The server's error code (`unknown_approval`, `invalid_arguments`, `unknown_call`, ...) or `client_*`. */
    readonly code: BridgeErrorCode;
    /** The call the refusal is about. */
    readonly id: string | undefined;
    constructor(code: BridgeErrorCode, message: string, id?: string);
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
    onmessage: ((event: {
        data: unknown;
    }) => void) | null;
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
export declare class AgentBridge {
    private currentUrl;
    private currentSessionId;
    private readonly token;
    private readonly ticketSource;
    private readonly clientName;
    private readonly reconnectOptions;
    private readonly WebSocketImpl;
    private readonly random;
    private readonly storage;
    private storageKey;
    /** Where a generated session id is kept; null when the app chose the id. */
    private readonly sessionPointerKey;
    /** The URL as given, to make the socket URL again when the session id changes. */
    private readonly baseUrl;
    private readonly page;
    private readonly visibility;
    private readonly pageListeners;
    private channel;
    /** Settles once this tab knows the session id is its own (a duplicated tab's is not). */
    private claim;
    /** A connection is being prepared (the claim, a ticket) before its socket exists. */
    private preparing;
    private preparations;
    private readonly transcript;
    /** Promises of `send()` whose run has started, by run id. */
    private readonly waiters;
    private lastFrameAt;
    private restartUntil;
    private rateLimitedUntil;
    private ticketRefusals;
    private readonly afterReload;
    private readonly tools;
    private readonly listeners;
    private readonly calls;
    private readonly interrupted;
    private readonly results;
    private readonly acknowledged;
    private readonly approvals;
    /** Approval ids already over, so a stray replay of their request is not shown again. */
    private readonly closedApprovals;
    private requests;
    private confirmations;
    private outgoing;
    /** Runs seen to start, so a snapshot's user turns confirm only messages not yet confirmed. */
    private readonly knownRuns;
    private syncNonce;
    private syncs;
    private readonly rejected;
    private socket;
    private timer;
    private watchdog;
    private attempt;
    private closedByUser;
    private currentStatus;
    private run;
    private ready;
    /** `ready` has arrived on the current socket. */
    private greeted;
    private resumeToken;
    private resumeSent;
    private fromStorage;
    private resetError;
    private storageFailed;
    /** The current connection was opened with a ticket. */
    private usedTicket;
    /** Sequence number of the last server message processed. */
    lastSeq: number;
    constructor(url: string, options?: AgentBridgeOptions);
    /** The WebSocket endpoint, `/ws/agent/{sessionId}`. */
    get url(): string;
    /**
     * The session's id. A generated one can change once, before the first connection, when this
     * tab turns out to be a duplicate of another that holds it.
     */
    get sessionId(): string;
    /**
     * The conversation as user and assistant turns, kept current from the server's events and
     * rebuilt from its snapshot after a reload; a new array (and new objects for what changed) on
     * every `change`.
     */
    get messages(): readonly Turn[];
    get status(): ConnectionStatus;
    /** Tools the server refused, by name, with its reasons. */
    get rejectedTools(): RejectedTool[];
    get serverTools(): string[];
    get limits(): BridgeLimits | null;
    /** The run in progress, if any. */
    get runId(): string | null;
    get toolNames(): string[];
    /** Whether a dropped connection can carry on the session (the server gave a resume token). */
    get resumable(): boolean;
    /** Ids of calls whose results the server has not acknowledged yet. */
    get unacknowledged(): string[];
    on<K extends keyof AgentBridgeEvents>(type: K, listener: Listener<AgentBridgeEvents[K]>): () => void;
    off<K extends keyof AgentBridgeEvents>(type: K, listener: Listener<AgentBridgeEvents[K]>): void;
    private emit;
    /**
     * Add a tool; sent in the next hello, or at once when connected. Returns its remover. Throws a
     * TypeError at once for what the server would refuse (see `checkTool`). With a literal
     * `parameters` schema the handler's arguments are typed from it, as with `defineTool`.
     */
    registerTool<const P extends ObjectSchema, R = unknown>(tool: ToolDefinition<P, R>): () => void;
    registerTool<A = Record<string, unknown>, R = unknown>(tool: ToolRegistration<A, R>): () => void;
    registerTools(tools: Iterable<ToolRegistration<any, any>>): void;
    unregisterTool(name: string): boolean;
    /** The definitions as the server receives them. */
    definitions(): WireToolDefinition[];
    connect(): void;
    private prepare;
    private openSocket;
    /**
     * Close for good: no reconnect until `connect()` is called again. The server holds the session
     * for a while, so `connect()` (or a new page) can still resume it; `bye()` ends it.
     */
    close(code?: number, reason?: string): void;
    /** Leave for good: the server ends the session at once, and nothing is kept for a resume. */
    bye(): void;
    /**
     * Send a user message; queued until the connection is ready when it is not yet. Across drops it
     * is delivered once: one that may have been lost with a connection is sent again only when the
     * server shows it never got it.
     */
    send(text: string): Promise<RunResult>;
    /**
     * Cancel one tool call (the person clicked "cancel" on its card): the call ends `cancelled`, its
     * handler's signal aborts with reason `by_user`, and the run goes on. Works on a call waiting
     * for approval too. Resolves once the server has taken it; rejects with a `BridgeError`
     * `unknown_call` when no such call is waiting or running.
     */
    cancelCall(id: string): Promise<void>;
    /** The approval requests still waiting for an answer, in the order they were asked. */
    get pendingApprovals(): ApprovalRequest[];
    /**
     * Stop the current run, and drop the messages queued behind it (their `send()` promises reject
     * with `client_stopped`). False when there is no run to stop, or no connection to send it on.
     */
    stop(): boolean;
    /** These messages will never start a run: out of the queue, their promises rejected. */
    private dropOutgoing;
    private transmit;
    /** Send the messages not sent yet, in order, unless earlier ones are still in doubt. */
    private flush;
    private uncertain;
    /**
     * Find out whether messages written to a lost connection reached the server. One it got starts
     * a run at once when none is running, so once a ping sent now is answered (after the replay)
     * with no run going, every message still unconfirmed was lost.
     */
    private reconcile;
    private onSync;
    /** The server has a message: its run started. Returns the page's entry for it, if it sent it. */
    private confirm;
    /** The run is over: its `send()` promise resolves with what the transcript has of it. */
    private settleRun;
    private setStatus;
    private receive;
    private onSnapshot;
    private onError;
    private onReady;
    private onResumed;
    /** The session this client knew is gone (or was never resumable): nothing of it is owed. */
    private dropSessionState;
    private forgetSession;
    private endRun;
    private noteRejections;
    private emitRejections;
    private onClosed;
    private backoff;
    /**
     * No frame for this long means the link is dead: the server pings every heartbeat interval, so
     * twice that (or interval + timeout, when the server allows more) is a ping missed for sure.
     */
    private deadLinkMs;
    private armWatchdog;
    private listenToPage;
    /** Reconnect now if waiting to, and check a link that has been quiet. */
    private wake;
    private readPointer;
    private writePointer;
    private openChannel;
    /** Whether another live tab holds this session id; no answer in time means none does. */
    private probe;
    /** This tab is a duplicate: it gets a session of its own, and nothing of the other's. */
    private takeNewSessionId;
    private clearWatchdog;
    private onDeadLink;
    private abortCall;
    /** The server has the call's outcome: the kept result, if any, is no longer needed. */
    private settled;
    /** Keep a result until acknowledged, and send it now when the connection is ready. */
    private keep;
    private onApprovalRequest;
    private respond;
    /** End an open approval request (once); its signal aborts unless this page had answered it. */
    private closeApproval;
    private ask;
    private dispatch;
    private onConfirmed;
    private onRefused;
    /** After a resume: send again what the old connection may have lost, if it is still open. */
    private resumeRequests;
    private failRequests;
    private mayRunAgain;
    private answer;
    private progress;
    private restore;
    private save;
    private read;
    private write;
    private remove;
}
export declare function toWire(tool: ToolRegistration<any, any>): WireToolDefinition;
/** The wait a `4429` close reason asks for ("...; retry in 12 s"), in ms; 0 when it names none. */
export declare function retryHintMs(reason: string): number;
/**
 * `fetchTicket`'s error when the server answered but gave no ticket: `status` is its HTTP status
 * (401: the credentials were refused, so asking again with the same ones cannot help).
 */
export declare class TicketError extends Error {
    readonly status: number;
    constructor(message: string, status: number);
}
/**
 * A ticket for `AgentBridge`'s `ticket` option: `POST {server}/ws-ticket` with the page's own
 * credentials (its cookies, or the headers given), and the ticket from the answer. Throws a
 * `TicketError` when the server refuses (a network failure throws as `fetch` does).
 */
export declare function fetchTicket(server: string, init?: RequestInit): Promise<string>;
