import { CATALOG, CATALOG_TOOL_NAMES, type CatalogArguments, type CatalogResults, type CatalogToolName } from "./catalog.js";
import { AgentBridge, type ToolHandler, type ToolRegistration, type WireToolDefinition } from "./client.js";
export { CATALOG, CATALOG_TOOL_NAMES, type CatalogArguments, type CatalogResults, type CatalogToolName };
/** What the `confirm` tool asks. The model writes only the question; the buttons are the page's. */
export interface ConfirmRequest {
    id: string;
    question: string;
    /** The page's own wording for the two answers: "Approve" and "Deny". */
    approveLabel: string;
    denyLabel: string;
}
/** Shows the question and resolves true (approved) or false (refused); aborts with `signal`. */
export type ConfirmRenderer = (request: ConfirmRequest, signal: AbortSignal) => Promise<boolean>;
export interface BrowserToolOptions {
    /** Register only these tools. */
    only?: readonly CatalogToolName[];
    /** Register all but these tools. */
    exclude?: readonly CatalogToolName[];
    /** How the page asks the person; defaults to a plain modal `<dialog>`. */
    confirm?: ConfirmRenderer;
    /** The element whose text `read_page` returns (default: the body). */
    textRoot?: () => Element | null;
    /** How `navigate` leaves the page (default: `location.assign` once the answer is sent). */
    navigate?: (url: string, newTab: boolean) => void;
}
/** The catalog as registrations, ready for `bridge.registerTools()`. */
export declare function browserTools(options?: BrowserToolOptions): ToolRegistration[];
/** Register the catalog (or part of it) in one call; returns a function that removes them. */
export declare function registerBrowserTools(bridge: AgentBridge, options?: BrowserToolOptions): () => void;
/** A registration from a language-neutral definition and a handler. */
export declare function fromWire(definition: WireToolDefinition, handler: ToolHandler<any, any>): ToolRegistration;
/** The default confirm: a modal `<dialog>` with the question and two buttons. */
export declare const dialogConfirm: ConfirmRenderer;
/**
 * The first `max` characters of `text`, counted in code points, so an emoji or any other character
 * outside the BMP is kept whole or left out, never halved: half a surrogate pair is not valid
 * Unicode, and the server would have to replace it.
 */
export declare function cutText(text: string, max: number): {
    text: string;
    truncated: boolean;
};
