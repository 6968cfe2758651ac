// The one way a request is read. A body schema is registered with the dialect of its API —
// the book's (Go's encoding/json behind readJSON, with byte offsets: json-body.ts), seed
// 002's (json.Decoder into a struct: platform/go-json.ts) or the plain one of our own routes
// (settings, GraphQL, callbacks: below) — and Fastify's validator, compiled from the route's
// schemas by requestValidator, runs that reader: the decoded value replaces the raw bytes
// as request.body before the handler runs. A body schema without a dialect fails at start-up,
// so no route can take a body nobody reads. Path parameters and query strings are read the
// same way when their schema has a reader (withPartReader): the handler gets the decoded
// value through paramsOf()/queryOf(), which also keep the Go handler's order (below).
import type { FastifyRequest, FastifySchemaCompiler } from 'fastify';
import type { Static, TObject, TSchema } from 'typebox';
import { Value } from 'typebox/value';
import { BadRequestError } from './errors.ts';

// Go's math.MaxInt64: ids, offsets and Atoi results are checked against it.
export const INT64_MAX = 9223372036854775807n;
export const INT64_MIN = -INT64_MAX - 1n;

type BodyReader = (body: Buffer | undefined) => unknown;

const readers = new WeakMap<object, BodyReader>();

// Registers how bodies of `schema` are read; returns the schema, to be used as a route's body.
export function withReader<T extends TSchema>(schema: T, reader: (body: Buffer | undefined) => Static<T>): T {
  readers.set(schema, reader);
  return schema;
}

// A body the route reads from the request stream itself (an upload, an import): the schema
// only describes it, and its reader passes the stream through untouched.
export function streamedBody<T extends TSchema>(schema: T): T {
  return withReader(schema, (stream) => stream as Static<T>);
}

// Reads `body` by the reader registered for `schema` (a route's body, or a bulk import's row).
export function readBody<T extends TSchema>(schema: T, body: Buffer | undefined): Static<T> {
  const reader = readers.get(schema);
  if (reader === undefined) throw new Error('body schema has no reader (platform/request.ts)');
  return reader(body) as Static<T>;
}

// The body of a route registered with `attachValidation: true`, whose handler reads its body
// where the Go handler does (after a lookup that may answer 404 or 409 first).
export function deferredBody<T extends TSchema>(request: FastifyRequest, _schema: T): Static<T> {
  if (request.validationError) throw request.validationError;
  return request.body as Static<T>;
}

// Path parameters or a query string as Fastify hands them over: a repeated key is an array.
export type RawPart = Readonly<Record<string, string | string[] | undefined>>;

declare const decodedAs: unique symbol;
// A parameters or query-string schema whose reader answers a V: paramsOf()/queryOf() return it.
export type Decoding<T extends TSchema, V> = T & { readonly [decodedAs]?: V };

type PartReader = (part: RawPart) => object;

const partReaders = new WeakMap<object, PartReader>();
// The values the validator has already decoded, to tell them from a part Fastify left raw
// (validation stops at its first failure, so on a route with attachValidation whose body
// failed, the query string is still raw).
const decodedParts = new WeakSet<object>();

// Registers how the params or querystring of `schema` are read, in its API's dialect (its
// messages, its status: a 404 for a book id, a 400 for a product id, a 422 for a list).
export function withPartReader<T extends TSchema, V extends object>(
  schema: T,
  reader: (part: RawPart) => V,
): Decoding<T, V> {
  partReaders.set(schema, reader);
  return schema;
}

function readPart(schema: TSchema, part: unknown): object {
  const reader = partReaders.get(schema);
  if (reader === undefined)
    throw new Error('params or querystring schema has no reader (platform/request.ts)');
  const value = reader((part ?? {}) as RawPart);
  decodedParts.add(value);
  return value;
}

function decoded<V>(request: FastifyRequest, schema: TSchema, part: 'params' | 'query'): V {
  const value = request[part] as object;
  if (decodedParts.has(value)) return value as V;
  const error = request.validationError;
  if (error?.validationContext === (part === 'query' ? 'querystring' : 'params')) throw error;
  return readPart(schema, value) as V;
}

// The decoded path parameters. On a route with attachValidation, a refused one is answered
// where the handler asks, which it does first (the book's readIDParam comes before anything).
export function paramsOf<V>(request: FastifyRequest, schema: Decoding<TSchema, V>): V {
  return decoded(request, schema, 'params');
}

// The decoded query string; on a route with attachValidation, read where the handler asks
// (after a lookup, as the Go handler may check it).
export function queryOf<V>(request: FastifyRequest, schema: Decoding<TSchema, V>): V {
  return decoded(request, schema, 'query');
}

// The plain dialect's messages: the top-level one, and per property what a missing value
// and a wrong one answer. A message may be an Error of its own (a 422, say).
export type PlainMessages = Readonly<{
  notObject: string;
  missing?: Readonly<Record<string, () => Error>>;
  invalid?: Readonly<Record<string, string>>;
  // An array property over its schema's maxItems.
  tooMany?: Readonly<Record<string, (maxItems: number) => string>>;
}>;

const isBlank = (body: Buffer) => body.every((c) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d);

// JSON.parse, then the schema: not an object, unknown keys (additionalProperties: false),
// then each property in the schema's order. Other keys pass when the schema allows them.
export function plainReader<T extends TObject>(schema: T, messages: PlainMessages) {
  const names = Object.keys(schema.properties);
  const required = new Set<string>(schema.required ?? []);
  const closed = (schema as { additionalProperties?: unknown }).additionalProperties === false;
  return (body: Buffer | undefined): Static<T> => {
    if (body === undefined || isBlank(body)) throw new BadRequestError('body must not be empty');
    let value: unknown;
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch {
      throw new BadRequestError('body contains badly-formed JSON');
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw new BadRequestError(messages.notObject);
    }
    const fields = value as Record<string, unknown>;
    if (closed) {
      const unknown = Object.keys(fields).find((key) => !names.includes(key));
      if (unknown !== undefined) throw new BadRequestError(`body contains unknown key "${unknown}"`);
    }
    for (const name of names) {
      const property = schema.properties[name] as TSchema & { maxItems?: number };
      const invalid = () => new BadRequestError(messages.invalid?.[name] ?? `"${name}" is not valid`);
      if (!(name in fields) || fields[name] === undefined) {
        if (required.has(name)) throw messages.missing?.[name]?.() ?? invalid();
        continue;
      }
      const field = fields[name];
      const tooMany = messages.tooMany?.[name];
      if (
        tooMany &&
        Array.isArray(field) &&
        property.maxItems !== undefined &&
        field.length > property.maxItems
      ) {
        throw new BadRequestError(tooMany(property.maxItems));
      }
      if (!Value.Check(property, field)) throw invalid();
    }
    return fields as Static<T>;
  };
}

// Go's url.Values.Get (with "" for absent left to the caller): the first value of a
// repeated query-string key.
export function first(value: unknown): string | undefined {
  return (Array.isArray(value) ? value[0] : value) as string | undefined;
}

// Go's strconv.ParseInt(text, 10, 64), or undefined where Go answers an error.
export function parseInt64(text: string): bigint | undefined {
  if (!/^[+-]?\d+$/.test(text)) return undefined;
  const n = BigInt(text);
  return n > INT64_MAX || n < INT64_MIN ? undefined : n;
}

type SchemaPart = { required?: string[]; properties?: Record<string, unknown> };

// Fastify's validator compiler for every route. A body is read by its schema's dialect (the
// decoded value replaces the bytes; a failure is that dialect's error), and so are parameters
// and query strings whose schema has a reader. Fastify checks params, then the body, then the
// query string, so a route whose Go handler reads them in another order sets attachValidation
// and asks paramsOf()/queryOf()/deferredBody() in its own order. Other parts (headers) are
// checked for the properties their schema requires.
export const requestValidator: FastifySchemaCompiler<TSchema> = ({ schema, method, url, httpPart }) => {
  if (httpPart === 'body') {
    const reader = readers.get(schema);
    if (reader === undefined)
      throw new Error(`${method} ${url}: its body schema has no reader (platform/request.ts)`);
    return (data: unknown) => {
      try {
        return { value: reader((data ?? undefined) as Buffer | undefined) };
      } catch (error) {
        return { error: error as Error };
      }
    };
  }
  if (partReaders.has(schema)) {
    return (data: unknown) => {
      try {
        return { value: readPart(schema, data) };
      } catch (error) {
        return { error: error as Error };
      }
    };
  }
  const required = (schema as SchemaPart).required ?? [];
  return (data: unknown) => {
    const part = (data ?? {}) as Record<string, unknown>;
    const missing = required.find((name) => part[name] === undefined);
    return missing === undefined
      ? true
      : { error: new BadRequestError(`${httpPart} must contain ${missing}`) };
  };
};
