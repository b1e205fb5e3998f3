// Compiled by `npm run typecheck` (tsc --strict): the handler's arguments are typed from the
// literal schema, and each `@ts-expect-error` below must be an error, or the build fails.

import {
  AgentBridge,
  CATALOG,
  defineTool,
  type BridgeErrorEvent,
  type CatalogArguments,
  type CatalogResults,
  type FromSchema,
  type RunResult,
  type Turn,
} from "../../src/index.js";

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_: T): void {}

// An inline literal needs no `as const`: defineTool infers the schema's literal type.
const weather = defineTool({
  name: "weather",
  description: "The weather in a city.",
  parameters: {
    type: "object",
    properties: {
      city: { type: "string" },
      days: { type: "integer", minimum: 1 },
      unit: { enum: ["C", "F"] },
      alerts: { type: "boolean" },
      tags: { type: "array", items: { type: "string" } },
      where: { type: "object", properties: { lat: { type: "number" }, lon: { type: "number" } }, required: ["lat", "lon"] },
      note: { type: ["string", "null"] },
    },
    required: ["city"],
    additionalProperties: false,
  },
  handler: (args) => {
    const city: string = args.city;
    const days: number | undefined = args.days;
    const unit: "C" | "F" | undefined = args.unit;
    const lat: number | undefined = args.where?.lat;
    const note: string | null | undefined = args.note;
    // @ts-expect-error: the schema has no `country`
    void args.country;
    // @ts-expect-error: `days` is optional in the schema, so it may be undefined
    const sure: number = args.days;
    // @ts-expect-error: `city` is a string, not a number
    const wrong: number = args.city;
    return { city, days, unit, lat, note, sure, wrong, tags: args.tags?.join(","), alerts: args.alerts === true };
  },
});
expectType<Equal<Parameters<typeof weather.handler>[0]["unit"], "C" | "F" | undefined>>(true);

// A schema declared on its own, `as const`, types the handler the same way.
const schema = { type: "object", properties: { id: { type: "string" } }, required: ["id"] } as const;
const lookup = defineTool({
  name: "lookup",
  parameters: schema,
  handler: async ({ id }) => ({ found: id.length > 0 }),
});
expectType<Equal<FromSchema<typeof schema>, { id: string }>>(true);

defineTool({
  name: "strict",
  parameters: { type: "object", properties: { a: { type: "number" } } },
  // @ts-expect-error: `b` is not in the schema, so the handler cannot destructure it
  handler: ({ b }) => b,
});

// @ts-expect-error: parameters must be an object schema at the top
defineTool({ name: "bad", parameters: { type: "string" }, handler: () => null });

// registerTool infers the same way from an inline schema.
const bridge = new AgentBridge("ws://127.0.0.1:9", { sessionId: "s", autoConnect: false });
bridge.registerTool(weather);
bridge.registerTool(lookup);
bridge.registerTool({
  name: "inline",
  parameters: { type: "object", properties: { q: { type: "string" } }, required: ["q"] },
  handler: (args) => {
    const q: string = args.q;
    // @ts-expect-error: not in the schema
    void args.r;
    return q;
  },
});
// Explicit types still work for a tool without a literal schema.
bridge.registerTool<{ n: number }, number>({ name: "double", handler: ({ n }) => n * 2 });

// The catalog is typed from its schemas.
expectType<Equal<CatalogArguments["read_page"], { max_chars?: number; include_query?: boolean }>>(true);
expectType<Equal<CatalogArguments["confirm"], { question: string }>>(true);
expectType<Equal<CatalogResults["confirm"], { confirmed: true }>>(true);
expectType<Equal<(typeof CATALOG)["navigate"]["destructive"], true>>(true);

// Error codes are a union, not any string.
bridge.on("error", (error: BridgeErrorEvent) => {
  if (error.code === "session_expired" || error.code === "client_ticket_failed") void error.runId;
  // @ts-expect-error: no such code
  if (error.code === "no_such_code") void 0;
});

// The transcript and the run result.
bridge.on("change", ({ messages }) => {
  const last: Turn | undefined = messages[messages.length - 1];
  if (last?.role === "assistant") {
    for (const part of last.parts) {
      if (part.type === "tool") void [part.name, part.status, part.approval?.approve];
      else void part.text.length;
    }
  }
});
const result: Promise<RunResult> = bridge.send("hi");
void result.then((r) => [r.runId, r.text, r.reason, r.usage?.totalTokens, r.toolResults[0]?.status]);
const stopped: boolean = bridge.stop();
void stopped;
