// What the app sees of the server's messages: camelCase objects, converted here at the edge, so
// the rest of the SDK and every app speak one casing. Only protocol field names are converted;
// tool arguments and results are the tool's own data and pass through untouched.
export function limitsFromWire(limits) {
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
function toolsReport(report) {
    return { accepted: [...report.accepted], rejected: [...report.rejected] };
}
export function resumeInfo(resumed) {
    return {
        fromSeq: resumed.from_seq,
        pendingCalls: [...(resumed.pending_calls ?? [])],
        pendingApprovals: [...(resumed.pending_approvals ?? [])],
        gap: resumed.gap ?? false,
    };
}
export function readyEvent(message) {
    const event = {
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
function snapshotCall(call) {
    const args = call.arguments;
    return {
        id: call.id,
        name: call.name,
        arguments: args !== null && typeof args === "object" && !Array.isArray(args) ? args : {},
        status: call.status ?? "pending",
        result: call.result ?? null,
        error: call.error ?? null,
    };
}
function snapshotTurn(turn) {
    const info = {
        role: turn.role,
        content: turn.content,
        runId: turn.run_id ?? null,
        toolCalls: (turn.tool_calls ?? []).map(snapshotCall),
    };
    return info;
}
export function snapshotEvent(message) {
    const run = message.run ? { runId: message.run.run_id, content: message.run.content ?? "" } : null;
    const event = {
        lastSeq: message.last_seq,
        turns: (message.turns ?? []).map(snapshotTurn),
        run,
        pendingCalls: [...(message.pending_calls ?? [])],
        pendingApprovals: [...(message.pending_approvals ?? [])],
    };
    return event;
}
export function stepRetryEvent(message) {
    return { runId: message.run_id, step: message.step, attempt: message.attempt, reason: message.reason };
}
export function toolsUpdatedEvent(message) {
    return { tools: toolsReport(message.tools), removed: [...(message.removed ?? [])], active: [...(message.active ?? [])] };
}
export function runStartEvent(message) {
    return { runId: message.run_id, content: message.content };
}
export function tokenEvent(message) {
    return { runId: message.run_id, content: message.content };
}
export function toolRequestEvent(message) {
    const event = {
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
export function toolCancelEvent(message) {
    return { id: message.id, reason: message.reason };
}
export function toolResultEvent(message) {
    const event = {
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
export function usageFromWire(usage) {
    if (!usage)
        return null;
    const out = {};
    if (usage.prompt_tokens !== undefined)
        out.promptTokens = usage.prompt_tokens;
    if (usage.completion_tokens !== undefined)
        out.completionTokens = usage.completion_tokens;
    if (usage.total_tokens !== undefined)
        out.totalTokens = usage.total_tokens;
    return out;
}
export function runCompleteEvent(message) {
    const event = {
        runId: message.run_id,
        reason: message.reason,
        steps: message.steps ?? 0,
        usage: usageFromWire(message.usage),
    };
    return event;
}
export function errorEvent(message) {
    return { code: message.code, message: message.message, id: message.id ?? null, runId: message.run_id ?? null };
}
