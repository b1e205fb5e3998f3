import type { WireToolDefinition } from "./client.js";
export type CatalogToolName = "clipboard_read" | "clipboard_write" | "confirm" | "get_location" | "get_selection" | "local_storage_get" | "local_storage_set" | "navigate" | "query_selector" | "read_page";
export declare const CATALOG_TOOL_NAMES: readonly CatalogToolName[];
export declare const CATALOG: Readonly<Record<CatalogToolName, WireToolDefinition>>;
