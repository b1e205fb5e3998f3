/** JSON Schema, as a plain object. */
export type JsonSchema = {
    readonly [keyword: string]: unknown;
};
/** What `parameters` must be: an object schema (the server refuses anything else at the top). */
export type ObjectSchema = {
    readonly type: "object";
    readonly properties?: {
        readonly [name: string]: JsonSchema;
    };
    readonly required?: readonly string[];
    readonly [keyword: string]: unknown;
};
type Simplify<T> = {
    [K in keyof T]: T[K];
} & {};
type Primitive<T> = T extends "string" ? string : T extends "number" | "integer" ? number : T extends "boolean" ? boolean : T extends "null" ? null : T extends "array" ? unknown[] : T extends "object" ? Record<string, unknown> : unknown;
type RequiredNames<S> = S extends {
    readonly required: readonly (infer R)[];
} ? R & string : never;
type ObjectOf<S> = S extends {
    readonly properties: infer P;
} ? Simplify<{
    -readonly [K in keyof P as K extends RequiredNames<S> ? K : never]: FromSchema<P[K]>;
} & {
    -readonly [K in keyof P as K extends RequiredNames<S> ? never : K]?: FromSchema<P[K]>;
}> : Record<string, unknown>;
type ArrayOf<S> = S extends {
    readonly items: infer I;
} ? FromSchema<I>[] : unknown[];
type OfType<S, T> = T extends "object" ? ObjectOf<S> : T extends "array" ? ArrayOf<S> : Primitive<T>;
/**
 * The TypeScript type of values a literal JSON Schema accepts: `type` (one or a list), `enum`,
 * `const`, `properties` with `required`, `items`, nested to any depth. Keywords that only narrow
 * a value (`minLength`, `pattern`, `format`, ...) do not change its type.
 */
export type FromSchema<S> = S extends {
    readonly const: infer C;
} ? C : S extends {
    readonly enum: readonly (infer E)[];
} ? E : S extends {
    readonly type: readonly (infer T)[];
} ? T extends unknown ? OfType<S, T> : never : S extends {
    readonly type: infer T;
} ? OfType<S, T> : S extends {
    readonly properties: unknown;
} ? ObjectOf<S> : unknown;
export {};
