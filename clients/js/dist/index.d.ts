export * from "./client.js";
export * from "./tools.js";
export type * from "./protocol.js";
