// Types from JSON Schema literals, so a tool's handler sees the arguments its schema describes and
// the two cannot drift apart: types only, nothing of this exists at run time.
export {};
