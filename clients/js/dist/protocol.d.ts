/** The `code` of an `error` message (and of a rejected tool). */
export type ErrorCode = "invalid_json" | "invalid_message" | "unknown_type" | "binary_not_supported" | "hello_required" | "already_greeted" | "unsupported_protocol" | "unknown_call" | "duplicate_response" | "unknown_tool" | "invalid_tool" | "too_many_tools" | "duplicate_tool" | "network_ref" | "no_active_run" | "queue_full" | "unknown_approval" | "invalid_arguments" | "resume_denied" | "rate_limited" | "session_expired" | "model_error" | "model_auth" | "model_permission" | "model_rate_limited" | "model_unavailable" | "model_timeout" | "model_connection" | "model_bad_request" | "model_truncated" | "model_bad_response" | "model_incomplete" | "internal_error";
/** The WebSocket close codes the server uses. */
export type CloseCode = 1000 | 1001 | 1008 | 1009 | 1011 | 1012 | 1013 | 4401 | 4403 | 4408 | 4409 | 4429;
export interface ApprovalRequestMessage {
    seq?: number | null;
    type: "approval_request";
    id: string;
    run_id: string;
    name: string;
    arguments: Record<string, unknown>;
    reason: string;
    expires_at: number;
    redelivered?: boolean | null;
}
export interface ApprovalResponseMessage {
    type: "approval_response";
    id: string;
    decision: "approve" | "deny";
    reason?: string | null;
    arguments?: Record<string, unknown> | null;
    remember?: "session" | null;
}
export interface ByeMessage {
    type: "bye";
}
export interface CancelCallMessage {
    type: "cancel_call";
    id: string;
}
export type ClientMessage = HelloMessage | RegisterToolsMessage | UnregisterToolsMessage | UserMessage | StopMessage | ToolResponseMessage | ToolProgressMessage | PingMessage | PongMessage | ByeMessage | ApprovalResponseMessage | CancelCallMessage;
export interface CompleteMessage {
    seq?: number | null;
    type: "complete";
    run_id: string;
    reason: "done" | "stopped" | "max_steps" | "tool_budget" | "error" | "disconnected";
    steps?: number;
    usage?: Usage | null;
}
export interface ErrorMessage {
    seq?: number | null;
    type: "error";
    code: ErrorCode;
    message: string;
    id?: string | null;
    run_id?: string | null;
}
export interface HelloMessage {
    type: "hello";
    protocol?: number;
    tools?: Array<Record<string, unknown>>;
    client?: string | null;
    resume?: ResumeRequest | null;
}
export interface Limits {
    max_message_bytes: number;
    max_tools: number;
    max_schema_bytes: number;
    max_tool_timeout_ms: number;
    default_tool_timeout_ms: number;
    human_timeout_ms: number;
    progress_cap_ms: number;
    heartbeat_interval_ms: number;
    heartbeat_timeout_ms: number;
    max_steps: number;
    resume_grace_ms: number;
}
export interface PingMessage {
    type: "ping";
    nonce?: string | null;
}
export interface PongMessage {
    type: "pong";
    nonce?: string | null;
}
export interface ReadyMessage {
    seq?: number | null;
    type: "ready";
    session_id: string;
    protocol?: number;
    tools: ToolsReport;
    server_tools?: string[];
    limits: Limits;
    resume_token?: string | null;
    resumed?: Resumed | null;
}
export interface RegisterToolsMessage {
    type: "register_tools";
    tools: Array<Record<string, unknown>>;
}
export interface RejectedTool {
    name?: string | null;
    code: ErrorCode;
    reason: string;
}
export interface ResumeRequest {
    token: string;
    last_seq?: number;
}
export interface Resumed {
    from_seq: number;
    pending_calls?: string[];
    pending_approvals?: string[];
    gap?: boolean;
}
export interface RunStartedMessage {
    seq?: number | null;
    type: "run_started";
    run_id: string;
    content: string;
}
export type ServerMessage = ReadyMessage | SnapshotMessage | StepRetryMessage | ApprovalRequestMessage | ToolsUpdatedMessage | RunStartedMessage | TokenMessage | ToolRequestMessage | ToolCancelMessage | ToolResultMessage | CompleteMessage | ErrorMessage | ServerPingMessage | ServerPongMessage;
export interface ServerPingMessage {
    seq?: number | null;
    type: "ping";
    nonce?: string | null;
}
export interface ServerPongMessage {
    seq?: number | null;
    type: "pong";
    nonce?: string | null;
}
export interface SnapshotCall {
    id: string;
    name: string;
    arguments?: unknown;
    status?: "ok" | "error" | "invalid_arguments" | "denied" | "timed_out" | "cancelled" | "outcome_unknown" | "approval_expired" | "pending";
    result?: unknown;
    error?: string | null;
}
export interface SnapshotMessage {
    seq?: number | null;
    type: "snapshot";
    last_seq: number;
    turns?: SnapshotTurn[];
    run?: SnapshotRun | null;
    pending_calls?: string[];
    pending_approvals?: string[];
}
export interface SnapshotRun {
    run_id: string;
    content?: string;
}
export interface SnapshotTurn {
    role: "user" | "assistant";
    content: string;
    run_id?: string | null;
    tool_calls?: SnapshotCall[];
}
export interface StepRetryMessage {
    seq?: number | null;
    type: "step_retry";
    run_id: string;
    step: number;
    attempt: number;
    reason: string;
}
export interface StopMessage {
    type: "stop";
}
export interface TokenMessage {
    seq?: number | null;
    type: "token";
    run_id: string;
    content: string;
}
export interface ToolCancelMessage {
    seq?: number | null;
    type: "tool_cancel";
    id: string;
    reason: string;
}
export interface ToolError {
    message: string;
    code?: string | null;
}
export interface ToolProgressMessage {
    type: "tool_progress";
    id: string;
    progress?: number | null;
    message?: string | null;
}
export interface ToolRequestMessage {
    seq?: number | null;
    type: "tool_request";
    id: string;
    run_id: string;
    name: string;
    arguments: Record<string, unknown>;
    timeout_ms: number;
    interactive?: boolean;
    redelivered?: boolean | null;
}
export interface ToolResponseMessage {
    type: "tool_response";
    id: string;
    status?: "ok" | "error" | "denied" | "outcome_unknown";
    result?: unknown;
    error?: ToolError | null;
}
export interface ToolResultMessage {
    seq?: number | null;
    type: "tool_result";
    id: string;
    run_id: string;
    name: string;
    status: "ok" | "error" | "invalid_arguments" | "denied" | "timed_out" | "cancelled" | "outcome_unknown" | "approval_expired";
    source?: "client" | "server" | "unknown";
    result?: unknown;
    error?: string | null;
}
export interface ToolsReport {
    accepted: string[];
    rejected: RejectedTool[];
}
export interface ToolsUpdatedMessage {
    seq?: number | null;
    type: "tools_updated";
    tools: ToolsReport;
    removed?: string[];
    active?: string[];
}
export interface UnregisterToolsMessage {
    type: "unregister_tools";
    names: string[];
}
export interface Usage {
    prompt_tokens?: number;
    completion_tokens?: number;
    total_tokens?: number;
}
export interface UserMessage {
    type: "message";
    content: string;
}
