// agent-bridge browser SDK: `AgentBridge` speaks protocol v1; `browserTools` is the standard catalog.

export * from "./client.js";
export * from "./tools.js";
export type * from "./protocol.js";
