// The standard browser tools: definitions from tools/*.json, implementations for a real page.
import { CATALOG, CATALOG_TOOL_NAMES } from "./catalog.js";
import { AgentBridge, ToolCallError, ToolDenied, } from "./client.js";
export { CATALOG, CATALOG_TOOL_NAMES };
const implementations = {
    read_page: (args, _ctx, options) => {
        const root = options.textRoot?.() ?? document.body;
        const full = normaliseText(visibleText(root));
        const max = typeof args.max_chars === "number" ? args.max_chars : 4000;
        const cut = cutText(full, max);
        return { title: document.title, url: pageAddress(args.include_query === true), text: cut.text, truncated: cut.truncated };
    },
    // Whole, never cut: a selection is what the person chose to show; `cutText` is for pages.
    get_selection: () => ({ text: wellFormed(window.getSelection()?.toString() ?? "") }),
    query_selector: (args) => {
        const selector = String(args.selector);
        let found;
        try {
            found = [...document.querySelectorAll(selector)];
        }
        catch (error) {
            throw new ToolCallError(`not a valid CSS selector: ${selector}`, "invalid_selector");
        }
        const max = typeof args.max_results === "number" ? args.max_results : 20;
        return {
            count: found.length,
            matches: found.slice(0, max).map((element) => ({
                tag: element.tagName.toLowerCase(),
                text: cutText(normaliseText(visibleText(element)), 2000).text,
            })),
        };
    },
    get_location: async (args, ctx) => {
        if (!("geolocation" in navigator)) {
            throw new ToolCallError("this browser has no geolocation", "unsupported");
        }
        if (await permissionState("geolocation") === "denied") {
            throw new ToolCallError("location access is blocked for this site; the person can allow it in the browser's site settings", "permission_denied");
        }
        const position = await new Promise((resolve, reject) => {
            ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
            navigator.geolocation.getCurrentPosition(resolve, (error) => reject(geolocationError(error)), {
                enableHighAccuracy: args.high_accuracy === true,
                timeout: Math.max(1000, ctx.timeoutMs - 1000),
                maximumAge: 60_000,
            });
        });
        return {
            latitude: position.coords.latitude,
            longitude: position.coords.longitude,
            accuracy_m: position.coords.accuracy,
        };
    },
    clipboard_read: async () => {
        const clipboard = requireClipboard();
        try {
            return { text: await clipboard.readText() };
        }
        catch (error) {
            throw clipboardError(error, "read");
        }
    },
    clipboard_write: async (args) => {
        const clipboard = requireClipboard();
        const text = String(args.text);
        try {
            await clipboard.writeText(text);
        }
        catch (error) {
            throw clipboardError(error, "write");
        }
        return { written: text.length };
    },
    local_storage_get: (args) => {
        const storage = requireStorage();
        if (typeof args.key === "string")
            return { key: args.key, value: storage.getItem(args.key) };
        const keys = [];
        for (let i = 0; i < storage.length; i += 1) {
            const key = storage.key(i);
            if (key !== null)
                keys.push(key);
        }
        return { keys: keys.sort() };
    },
    local_storage_set: (args) => {
        const storage = requireStorage();
        const key = String(args.key);
        const previous = storage.getItem(key);
        try {
            if (args.value === null)
                storage.removeItem(key);
            else
                storage.setItem(key, String(args.value));
        }
        catch (error) {
            throw new ToolCallError(`local storage refused the value: ${String(error)}`, "quota_exceeded");
        }
        return { key, previous };
    },
    confirm: async (args, ctx, options) => {
        // The buttons are the page's: a model choosing their words could label a refusal "OK".
        const request = { id: ctx.id, question: String(args.question), approveLabel: "Approve", denyLabel: "Deny" };
        const approved = await (options.confirm ?? dialogConfirm)(request, ctx.signal);
        if (!approved)
            throw new ToolDenied("the person declined");
        return { confirmed: true };
    },
    navigate: (args, _ctx, options) => {
        const url = new URL(String(args.url), location.href);
        if (url.protocol !== "http:" && url.protocol !== "https:") {
            throw new ToolCallError("only http and https addresses can be opened", "invalid_url");
        }
        const newTab = args.new_tab === true;
        if (options.navigate) {
            options.navigate(url.href, newTab);
        }
        else if (newTab) {
            const opened = window.open(url.href, "_blank");
            if (!opened)
                throw new ToolCallError("the browser blocked the new tab", "popup_blocked");
            opened.opener = null;
        }
        else {
            // Leaving the page ends this script; the answer goes out first so the call does not time out.
            setTimeout(() => location.assign(url.href), 200);
        }
        return { url: url.href, new_tab: newTab };
    },
};
/** The catalog as registrations, ready for `bridge.registerTools()`. */
export function browserTools(options = {}) {
    const only = options.only ? new Set(options.only) : null;
    const exclude = new Set(options.exclude ?? []);
    for (const name of [...(only ?? []), ...exclude]) {
        if (!(name in CATALOG))
            throw new Error(`the catalog has no tool named ${name}`);
    }
    return CATALOG_TOOL_NAMES.filter((name) => (only ? only.has(name) : true) && !exclude.has(name)).map((name) => fromWire(CATALOG[name], (args, ctx) => implementations[name](args, ctx, options)));
}
/** Register the catalog (or part of it) in one call; returns a function that removes them. */
export function registerBrowserTools(bridge, options = {}) {
    const tools = browserTools(options);
    bridge.registerTools(tools);
    return () => {
        for (const tool of tools)
            bridge.unregisterTool(tool.name);
    };
}
/** A registration from a language-neutral definition and a handler. */
export function fromWire(definition, handler) {
    const tool = { name: definition.name, handler };
    if (definition.description !== undefined)
        tool.description = definition.description;
    if (definition.parameters !== undefined)
        tool.parameters = definition.parameters;
    if (definition.output_schema !== undefined)
        tool.outputSchema = definition.output_schema;
    if (definition.timeout_ms !== undefined)
        tool.timeoutMs = definition.timeout_ms;
    if (definition.interactive)
        tool.interactive = true;
    if (definition.read_only)
        tool.readOnly = true;
    if (definition.destructive)
        tool.destructive = true;
    if (definition.idempotent)
        tool.idempotent = true;
    if (definition.untrusted_content)
        tool.untrustedContent = true;
    return tool;
}
/** The default confirm: a modal `<dialog>` with the question and two buttons. */
export const dialogConfirm = (request, signal) => new Promise((resolve, reject) => {
    const dialog = document.createElement("dialog");
    dialog.className = "agent-bridge-confirm";
    const question = document.createElement("p");
    question.textContent = request.question;
    const approve = document.createElement("button");
    approve.type = "button";
    approve.textContent = request.approveLabel;
    const deny = document.createElement("button");
    deny.type = "button";
    deny.textContent = request.denyLabel;
    dialog.append(question, approve, deny);
    const finish = (approved) => {
        dialog.close();
        dialog.remove();
        if (approved === null)
            reject(signal.reason);
        else
            resolve(approved);
    };
    approve.addEventListener("click", () => finish(true));
    deny.addEventListener("click", () => finish(false));
    // Escape is a refusal, not a dismissal that leaves the agent waiting.
    dialog.addEventListener("cancel", (event) => {
        event.preventDefault();
        finish(false);
    });
    signal.addEventListener("abort", () => finish(null), { once: true });
    document.body.append(dialog);
    dialog.showModal();
});
/**
 * The first `max` characters of `text`, counted in code points, so an emoji or any other character
 * outside the BMP is kept whole or left out, never halved: half a surrogate pair is not valid
 * Unicode, and the server would have to replace it.
 */
export function cutText(text, max) {
    const limit = Math.max(0, Math.floor(max));
    // Most text is shorter than the limit even in UTF-16 units: nothing to count.
    if (text.length <= limit)
        return { text: wellFormed(text), truncated: false };
    let units = 0;
    let points = 0;
    for (const char of text) {
        if (points === limit)
            return { text: wellFormed(text.slice(0, units)), truncated: true };
        units += char.length;
        points += 1;
    }
    return { text: wellFormed(text), truncated: false };
}
/** `text` with any lone surrogate (already broken in the page) replaced by U+FFFD. */
function wellFormed(text) {
    return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, "\uFFFD");
}
/**
 * The page's address for `read_page`: without the query string and fragment unless asked, since
 * they often carry tokens, ids or personal data the model has no need of.
 */
function pageAddress(includeQuery) {
    if (includeQuery)
        return location.href;
    const url = new URL(location.href);
    url.search = "";
    url.hash = "";
    return url.href;
}
function visibleText(element) {
    return element.innerText ?? element.textContent ?? "";
}
function normaliseText(text) {
    return text.replace(/[ \t\f\v\r]+/g, " ").replace(/ *\n[\n ]*/g, "\n").trim();
}
async function permissionState(name) {
    try {
        const status = await navigator.permissions?.query({ name: name });
        return status?.state ?? null;
    }
    catch {
        // Some browsers cannot query this permission; asking is then the only way to find out.
        return null;
    }
}
function geolocationError(error) {
    switch (error.code) {
        case error.PERMISSION_DENIED:
            return new ToolCallError("the person (or the browser) refused access to the location", "permission_denied");
        case error.TIMEOUT:
            return new ToolCallError("the location did not arrive in time", "timeout");
        default:
            return new ToolCallError(`the location is unavailable: ${error.message}`, "position_unavailable");
    }
}
function requireClipboard() {
    if (!navigator.clipboard) {
        throw new ToolCallError("the clipboard is only available to secure (https or localhost) pages", "unsupported");
    }
    return navigator.clipboard;
}
function clipboardError(error, verb) {
    const name = error instanceof Error ? error.name : "";
    if (name === "NotAllowedError" || name === "SecurityError") {
        return new ToolCallError(`the browser refused to ${verb} the clipboard: permission denied, or the page is not focused`, "permission_denied");
    }
    return new ToolCallError(`could not ${verb} the clipboard: ${String(error)}`, "clipboard_failed");
}
function requireStorage() {
    try {
        return window.localStorage;
    }
    catch {
        throw new ToolCallError("local storage is disabled for this page", "unsupported");
    }
}
