import type { CompleteReason, RunCompleteEvent, SnapshotEvent, ToolRequestEvent, ToolResultEvent, ToolResultStatus, ToolSource, TokenUsage } from "./events.js";
import type { ApprovalRequest, ApprovalState } from "./client.js";
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
    readonly progress: {
        readonly value: number | null;
        readonly message: string | null;
    } | null;
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
    readonly retry: {
        readonly step: number;
        readonly attempt: number;
        readonly reason: string;
    } | null;
}
export type Turn = UserTurn | AssistantTurn;
export interface ChangeEvent {
    messages: readonly Turn[];
}
type Mutable<T> = {
    -readonly [K in keyof T]: T[K];
};
type UserRecord = Mutable<UserTurn> & {
    view: UserTurn | null;
};
export declare class Transcript {
    private turns;
    private view;
    private users;
    private readonly onChange;
    constructor(onChange: () => void);
    get messages(): readonly Turn[];
    addUser(text: string): UserRecord;
    drop(turn: UserRecord): void;
    /** A run started: for `turn` (a message this page sent), or for one sent elsewhere. */
    started(runId: string, content: string, turn: UserRecord | null): void;
    token(runId: string, content: string): void;
    /** The step is made again: its text so far (what came after the last tool call) is void. */
    stepRetry(runId: string, step: number, attempt: number, reason: string): void;
    toolRequest(event: ToolRequestEvent): void;
    approvalRequest(approval: ApprovalRequest): void;
    approvalState(id: string, state: ApprovalState): void;
    progress(id: string, value: number | null, message: string | null): void;
    cancelled(id: string, reason: string): void;
    toolResult(event: ToolResultEvent): void;
    complete(event: RunCompleteEvent): void;
    /** The run's outcome so far, for `send()`'s promise. */
    outcome(runId: string): {
        text: string;
        toolResults: ToolResultEvent[];
    };
    /** Whether a run is known here and over. */
    isComplete(runId: string): boolean;
    /**
     * The server's account of the conversation replaces this page's; messages of this page still
     * queued stay at the end, and open approval requests keep their handles.
     */
    snapshot(snapshot: SnapshotEvent, approvals: ReadonlyMap<string, ApprovalRequest>, queued: readonly UserRecord[]): void;
    /** The session is gone: so is the conversation; messages still queued go to the new one. */
    reset(queued: readonly UserRecord[]): void;
    private changed;
    private userOf;
    private assistantOf;
    /** The run's assistant turn, made (at the end) when the run was not seen to start. */
    private assistant;
    private find;
    private tool;
}
export {};
