import type { CompleteMessage, ErrorCode, ErrorMessage, Limits, ReadyMessage, RejectedTool, Resumed, RunStartedMessage, SnapshotMessage, StepRetryMessage, TokenMessage, ToolCancelMessage, ToolRequestMessage, ToolResultMessage, ToolsUpdatedMessage, Usage } from "./protocol.js";
/** Codes of errors the client reports itself; the server's are `ErrorCode`. */
export type ClientErrorCode = "client_connect_failed" | "client_invalid_frame" | "client_storage_failed" | "client_ticket_failed" | "client_closed" | "client_session_reset" | "client_stopped";
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
    run: {
        runId: string;
        content: string;
    } | null;
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
export declare function limitsFromWire(limits: Limits): BridgeLimits;
export declare function resumeInfo(resumed: Resumed): ResumeInfo;
export declare function readyEvent(message: ReadyMessage): ReadyEvent;
export declare function snapshotEvent(message: SnapshotMessage): SnapshotEvent;
export declare function stepRetryEvent(message: StepRetryMessage): StepRetryEvent;
export declare function toolsUpdatedEvent(message: ToolsUpdatedMessage): ToolsUpdatedEvent;
export declare function runStartEvent(message: RunStartedMessage): RunStartEvent;
export declare function tokenEvent(message: TokenMessage): TokenEvent;
export declare function toolRequestEvent(message: ToolRequestMessage): ToolRequestEvent;
export declare function toolCancelEvent(message: ToolCancelMessage): ToolCancelEvent;
export declare function toolResultEvent(message: ToolResultMessage): ToolResultEvent;
export declare function usageFromWire(usage: Usage | null | undefined): TokenUsage | null;
export declare function runCompleteEvent(message: CompleteMessage): RunCompleteEvent;
export declare function errorEvent(message: ErrorMessage): BridgeErrorEvent;
