// The conversation as a page shows it, kept current from the wire events: user turns and
// assistant turns made of text and tool parts. Every change makes new objects for what changed
// (and a new array), so a view can compare by identity; what did not change keeps its object.
const TERMINAL = new Set([
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
    turns = [];
    view = null;
    users = 0;
    onChange;
    constructor(onChange) {
        this.onChange = onChange;
    }
    get messages() {
        if (this.view === null)
            this.view = Object.freeze(this.turns.map(render));
        return this.view;
    }
    // User turns --------------------------------------------------------------------------------
    addUser(text) {
        this.users += 1;
        const turn = { role: "user", id: `user-${this.users}`, text, runId: null, status: "queued", view: null };
        this.turns.push(turn);
        this.changed(turn);
        return turn;
    }
    drop(turn) {
        if (turn.status !== "queued")
            return;
        turn.status = "dropped";
        this.changed(turn);
    }
    /** A run started: for `turn` (a message this page sent), or for one sent elsewhere. */
    started(runId, content, turn) {
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
    token(runId, content) {
        const turn = this.assistant(runId);
        const last = turn.parts[turn.parts.length - 1];
        if (last?.type === "text")
            last.text += content;
        else
            turn.parts.push({ type: "text", text: content });
        turn.retry = null;
        this.changed(turn);
    }
    /** The step is made again: its text so far (what came after the last tool call) is void. */
    stepRetry(runId, step, attempt, reason) {
        const turn = this.assistant(runId);
        let keep = turn.parts.length;
        while (keep > 0 && turn.parts[keep - 1].type === "text")
            keep -= 1;
        turn.parts.length = keep;
        turn.retry = { step, attempt, reason };
        this.changed(turn);
    }
    toolRequest(event) {
        const [turn, part] = this.tool(event.runId, event.id, event.name);
        part.arguments = event.arguments;
        if (!TERMINAL.has(part.status))
            part.status = "running";
        this.changed(turn);
    }
    approvalRequest(approval) {
        const [turn, part] = this.tool(approval.runId, approval.id, approval.name);
        part.arguments = approval.arguments;
        part.approval = approval;
        part.approvalState = approval.state;
        if (!TERMINAL.has(part.status))
            part.status = "awaiting_approval";
        this.changed(turn);
    }
    approvalState(id, state) {
        const found = this.find(id);
        if (!found)
            return;
        const [turn, part] = found;
        part.approvalState = state;
        if (part.status === "awaiting_approval" && isOutcome(state)) {
            part.status = state === "approved" ? "running" : "pending";
        }
        this.changed(turn);
    }
    progress(id, value, message) {
        const found = this.find(id);
        if (!found)
            return;
        found[1].progress = { value, message };
        this.changed(found[0]);
    }
    cancelled(id, reason) {
        const found = this.find(id);
        if (!found)
            return;
        found[1].cancelReason = reason;
        this.changed(found[0]);
    }
    toolResult(event) {
        const [turn, part] = this.tool(event.runId, event.id, event.name);
        part.status = event.status;
        part.result = event.status === "ok" ? event.result : null;
        part.error = event.status === "ok" ? null : event.error ?? describeResult(event.result);
        part.source = event.source;
        this.changed(turn);
    }
    complete(event) {
        const turn = this.assistant(event.runId);
        turn.status = "complete";
        turn.reason = event.reason;
        turn.steps = event.steps;
        turn.usage = event.usage;
        turn.retry = null;
        this.changed(turn);
    }
    /** The run's outcome so far, for `send()`'s promise. */
    outcome(runId) {
        const turn = this.assistantOf(runId);
        if (turn === null)
            return { text: "", toolResults: [] };
        const toolResults = [];
        for (const part of turn.parts) {
            if (part.type !== "tool" || !TERMINAL.has(part.status))
                continue;
            toolResults.push({
                id: part.id,
                runId,
                name: part.name,
                status: part.status,
                source: part.source ?? "unknown",
                result: part.result,
                error: part.error,
            });
        }
        return { text: textOf(turn.parts), toolResults };
    }
    /** Whether a run is known here and over. */
    isComplete(runId) {
        return this.assistantOf(runId)?.status === "complete";
    }
    // Whole conversation ------------------------------------------------------------------------
    /**
     * The server's account of the conversation replaces this page's; messages of this page still
     * queued stay at the end, and open approval requests keep their handles.
     */
    snapshot(snapshot, approvals, queued) {
        const turns = [];
        const byRun = new Map();
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
            if (item.content)
                turn.parts.push({ type: "text", text: item.content });
            for (const call of item.toolCalls) {
                const approval = approvals.get(call.id) ?? null;
                const status = call.status !== "pending" ? call.status : asking.has(call.id) || approval?.state === "open" ? "awaiting_approval" : "pending";
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
            if (snapshot.run.content)
                turn.parts.push({ type: "text", text: snapshot.run.content });
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
    reset(queued) {
        this.turns = [...queued];
        this.changed(null);
    }
    // Internals ---------------------------------------------------------------------------------
    changed(turn) {
        if (turn !== null)
            turn.view = null;
        this.view = null;
        this.onChange();
    }
    userOf(runId) {
        for (const turn of this.turns)
            if (turn.role === "user" && turn.runId === runId)
                return turn;
        return null;
    }
    assistantOf(runId) {
        for (let i = this.turns.length - 1; i >= 0; i -= 1) {
            const turn = this.turns[i];
            if (turn.role === "assistant" && turn.runId === runId)
                return turn;
        }
        return null;
    }
    /** The run's assistant turn, made (at the end) when the run was not seen to start. */
    assistant(runId) {
        const found = this.assistantOf(runId);
        if (found)
            return found;
        const turn = newAssistant(runId);
        this.turns.push(turn);
        return turn;
    }
    find(id) {
        for (let i = this.turns.length - 1; i >= 0; i -= 1) {
            const turn = this.turns[i];
            if (turn.role !== "assistant")
                continue;
            for (const part of turn.parts)
                if (part.type === "tool" && part.id === id)
                    return [turn, part];
        }
        return null;
    }
    tool(runId, id, name) {
        const found = this.find(id);
        if (found)
            return found;
        const turn = this.assistant(runId);
        const part = newTool(id, name);
        turn.parts.push(part);
        return [turn, part];
    }
}
function newAssistant(runId) {
    return { role: "assistant", id: runId, runId, parts: [], status: "streaming", reason: null, steps: null, usage: null, retry: null, view: null };
}
function newTool(id, name) {
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
function isOutcome(state) {
    return state !== "open" && state !== "answering";
}
function textOf(parts) {
    let text = "";
    for (const part of parts)
        if (part.type === "text")
            text += part.text;
    return text;
}
function describeResult(result) {
    if (result === null || result === undefined)
        return null;
    return typeof result === "string" ? result : JSON.stringify(result);
}
function render(turn) {
    if (turn.view !== null)
        return turn.view;
    let view;
    if (turn.role === "user") {
        view = Object.freeze({ role: "user", id: turn.id, text: turn.text, runId: turn.runId, status: turn.status });
    }
    else {
        const parts = Object.freeze(turn.parts.map((part) => Object.freeze({ ...part })));
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
