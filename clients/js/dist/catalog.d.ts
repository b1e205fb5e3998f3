import type { FromSchema } from "./schema.js";
export type CatalogToolName = "clipboard_read" | "clipboard_write" | "confirm" | "get_location" | "get_selection" | "local_storage_get" | "local_storage_set" | "navigate" | "query_selector" | "read_page";
export declare const CATALOG_TOOL_NAMES: readonly CatalogToolName[];
export declare const CATALOG: {
    readonly clipboard_read: {
        readonly name: "clipboard_read";
        readonly description: "Read the text on the clipboard. The browser may ask the person for permission first.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {};
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly text: {
                    readonly type: "string";
                };
            };
            readonly required: readonly ["text"];
        };
        readonly timeout_ms: 30000;
        readonly read_only: true;
        readonly untrusted_content: true;
    };
    readonly clipboard_write: {
        readonly name: "clipboard_write";
        readonly description: "Write text to the clipboard, replacing what was copied before.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly text: {
                    readonly type: "string";
                    readonly maxLength: 100000;
                };
            };
            readonly required: readonly ["text"];
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly written: {
                    readonly type: "integer";
                    readonly minimum: 0;
                    readonly description: "Characters written.";
                };
            };
            readonly required: readonly ["written"];
        };
        readonly timeout_ms: 10000;
        readonly destructive: true;
    };
    readonly confirm: {
        readonly name: "confirm";
        readonly description: "Ask the person to confirm before going ahead: shows the question with Approve and Deny buttons and waits for them to decide. A refusal ends the call as denied.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly question: {
                    readonly type: "string";
                    readonly minLength: 1;
                    readonly maxLength: 2000;
                    readonly description: "What to ask, in full, as a yes-or-no question; the page shows its own Approve and Deny buttons.";
                };
            };
            readonly required: readonly ["question"];
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly confirmed: {
                    readonly const: true;
                };
            };
            readonly required: readonly ["confirmed"];
        };
        readonly timeout_ms: 300000;
        readonly interactive: true;
    };
    readonly get_location: {
        readonly name: "get_location";
        readonly description: "Get the device's geographic location (latitude and longitude). The browser may ask the person for permission; a refusal is reported as a permission_denied error.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly high_accuracy: {
                    readonly type: "boolean";
                    readonly default: false;
                    readonly description: "Ask for GPS-level accuracy (slower).";
                };
            };
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly latitude: {
                    readonly type: "number";
                    readonly minimum: -90;
                    readonly maximum: 90;
                };
                readonly longitude: {
                    readonly type: "number";
                    readonly minimum: -180;
                    readonly maximum: 180;
                };
                readonly accuracy_m: {
                    readonly type: "number";
                    readonly minimum: 0;
                };
            };
            readonly required: readonly ["latitude", "longitude", "accuracy_m"];
        };
        readonly timeout_ms: 60000;
        readonly interactive: true;
        readonly read_only: true;
    };
    readonly get_selection: {
        readonly name: "get_selection";
        readonly description: "Get the text the person has selected (highlighted) on this page; empty when nothing is selected.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {};
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly text: {
                    readonly type: "string";
                };
            };
            readonly required: readonly ["text"];
        };
        readonly timeout_ms: 5000;
        readonly read_only: true;
        readonly untrusted_content: true;
    };
    readonly local_storage_get: {
        readonly name: "local_storage_get";
        readonly description: "Read a value this site keeps in the browser's local storage, or list the stored keys when no key is given.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly key: {
                    readonly type: "string";
                    readonly maxLength: 1000;
                };
            };
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly key: {
                    readonly type: "string";
                };
                readonly value: {
                    readonly type: readonly ["string", "null"];
                };
                readonly keys: {
                    readonly type: "array";
                    readonly items: {
                        readonly type: "string";
                    };
                };
            };
        };
        readonly timeout_ms: 5000;
        readonly read_only: true;
    };
    readonly local_storage_set: {
        readonly name: "local_storage_set";
        readonly description: "Store a value under a key in this site's browser local storage; a null value removes the key. The result gives the previous value, so a change can be undone by storing it back.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly key: {
                    readonly type: "string";
                    readonly minLength: 1;
                    readonly maxLength: 1000;
                };
                readonly value: {
                    readonly type: readonly ["string", "null"];
                    readonly maxLength: 100000;
                };
            };
            readonly required: readonly ["key", "value"];
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly key: {
                    readonly type: "string";
                };
                readonly previous: {
                    readonly type: readonly ["string", "null"];
                };
            };
            readonly required: readonly ["key", "previous"];
        };
        readonly timeout_ms: 5000;
    };
    readonly navigate: {
        readonly name: "navigate";
        readonly description: "Go to a web address (http or https URL) in this tab, leaving the current page, or open it in a new tab.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly url: {
                    readonly type: "string";
                    readonly format: "uri";
                    readonly pattern: "^https?://";
                    readonly maxLength: 8000;
                };
                readonly new_tab: {
                    readonly type: "boolean";
                    readonly default: false;
                };
            };
            readonly required: readonly ["url"];
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly url: {
                    readonly type: "string";
                };
                readonly new_tab: {
                    readonly type: "boolean";
                };
            };
            readonly required: readonly ["url", "new_tab"];
        };
        readonly timeout_ms: 10000;
        readonly destructive: true;
    };
    readonly query_selector: {
        readonly name: "query_selector";
        readonly description: "Get the text of the elements on this page that match a CSS selector, such as h1, .price or #main a.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly selector: {
                    readonly type: "string";
                    readonly minLength: 1;
                    readonly maxLength: 1000;
                    readonly description: "A CSS selector.";
                };
                readonly max_results: {
                    readonly type: "integer";
                    readonly minimum: 1;
                    readonly maximum: 500;
                    readonly default: 20;
                };
            };
            readonly required: readonly ["selector"];
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly count: {
                    readonly type: "integer";
                    readonly minimum: 0;
                };
                readonly matches: {
                    readonly type: "array";
                    readonly items: {
                        readonly type: "object";
                        readonly properties: {
                            readonly tag: {
                                readonly type: "string";
                            };
                            readonly text: {
                                readonly type: "string";
                            };
                        };
                        readonly required: readonly ["tag", "text"];
                    };
                };
            };
            readonly required: readonly ["count", "matches"];
        };
        readonly timeout_ms: 5000;
        readonly read_only: true;
        readonly untrusted_content: true;
    };
    readonly read_page: {
        readonly name: "read_page";
        readonly description: "Read the current page: its title, its address (URL, without the query string and fragment unless include_query is set) and its visible text.";
        readonly parameters: {
            readonly type: "object";
            readonly properties: {
                readonly max_chars: {
                    readonly type: "integer";
                    readonly minimum: 1;
                    readonly maximum: 100000;
                    readonly default: 4000;
                    readonly description: "Longest text to return; longer text is cut and marked truncated.";
                };
                readonly include_query: {
                    readonly type: "boolean";
                    readonly default: false;
                    readonly description: "Report the address with its query string and fragment, which can hold tokens or personal data; leave off unless they are needed.";
                };
            };
            readonly additionalProperties: false;
        };
        readonly output_schema: {
            readonly type: "object";
            readonly properties: {
                readonly title: {
                    readonly type: "string";
                };
                readonly url: {
                    readonly type: "string";
                };
                readonly text: {
                    readonly type: "string";
                };
                readonly truncated: {
                    readonly type: "boolean";
                };
            };
            readonly required: readonly ["title", "url", "text", "truncated"];
        };
        readonly timeout_ms: 5000;
        readonly read_only: true;
        readonly untrusted_content: true;
    };
};
/** The arguments each catalog tool's handler gets, from its `parameters`. */
export type CatalogArguments = {
    [N in CatalogToolName]: FromSchema<(typeof CATALOG)[N]["parameters"]>;
};
/** What each catalog tool returns, from its `output_schema`. */
export type CatalogResults = {
    [N in CatalogToolName]: FromSchema<(typeof CATALOG)[N]["output_schema"]>;
};
