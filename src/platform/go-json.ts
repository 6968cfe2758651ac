// Request bodies of the products API, decoded as seed 002's Go handlers decode them:
// json.NewDecoder(r.Body).Decode(&req) into a struct. Unlike the book's readJSON, that
// ignores unknown keys and anything after the first value, and reports errors in
// encoding/json's words, which the auth handlers pass on ("invalid request body: ...").
// The struct is the body's TypeBox schema (goStruct): its title is the Go type's name, each
// property's JSON type its Go kind.
import {
  type Static,
  type TNull,
  type TObject,
  type TOptional,
  type TProperties,
  type TSchema,
  type TUnion,
  Type,
} from 'typebox';
import { BadRequestError } from './errors.ts';
import { scanValue } from './json-body.ts';
import { parseInt64, withReader } from './request.ts';

type GoKind = 'string' | 'float64' | 'int' | '[]string';

class NumberText {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (value instanceof NumberText) return 'number';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'boolean') return 'bool';
  return typeof value;
}

function decodeField(kind: GoKind, value: unknown): string | string[] | number | null | 'mismatch' {
  if (value === null) return null;
  if (kind === 'string') return typeof value === 'string' ? value : 'mismatch';
  if (kind === '[]string') {
    if (!Array.isArray(value)) return 'mismatch';
    return value.every((item) => typeof item === 'string') ? (value as string[]) : 'mismatch';
  }
  if (!(value instanceof NumberText)) return 'mismatch';
  if (kind === 'float64') {
    const n = Number(value.text);
    return Number.isFinite(n) ? n : 'mismatch';
  }
  const n = parseInt64(value.text);
  return n === undefined ? 'mismatch' : Number(n);
}

// The Go kind of one property of a struct schema: its type without the null Go allows.
function goKind(name: string, property: TSchema): GoKind {
  const schema = (property as { anyOf?: { type?: string; items?: { type?: string } }[] }).anyOf?.[0];
  if (schema?.type === 'string') return 'string';
  if (schema?.type === 'number') return 'float64';
  if (schema?.type === 'integer') return 'int';
  if (schema?.type === 'array' && schema.items?.type === 'string') return '[]string';
  throw new Error(`struct field "${name}" has a schema with no Go kind`);
}

type Struct = Readonly<{ name: string; fields: Readonly<Record<string, GoKind>> }>;

// `detailed`: the error message carries encoding/json's text, as the seed's auth handlers do.
function decodeGoJson(body: Buffer | undefined, struct: Struct, detailed: boolean): unknown {
  const fail = (detail: string) =>
    new BadRequestError(detailed ? `invalid request body: ${detail}` : 'invalid request body');
  const bytes = body ?? Buffer.alloc(0);
  let start = 0;
  while (start < bytes.length && /\s/.test(String.fromCharCode(bytes[start] as number))) start++;
  if (start === bytes.length) throw fail('EOF');
  let end: number;
  try {
    end = scanValue(bytes, start);
  } catch (err) {
    const offset = (err as { offset?: number }).offset;
    if (offset === undefined) throw fail('unexpected EOF');
    const char = bytes.subarray(start + offset - 1, start + offset).toString('latin1');
    throw fail(`invalid character '${char}' at offset ${start + offset}`);
  }
  // The reviver's third argument (Node 21+) holds a number's source text: ints are checked
  // on the text, as Go does, not on a rounded double.
  const reviver = (_key: string, parsed: unknown, context?: { source?: string }) =>
    typeof parsed === 'number' ? new NumberText(context?.source ?? String(parsed)) : parsed;
  const text = bytes.subarray(start, end).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text, reviver as (key: string, value: unknown) => unknown);
  } catch (err) {
    if (!(err instanceof RangeError)) throw err;
    // Nested deeper than the reviver's recursion allows. No field is deeper than one array,
    // so only the top level's numbers need their text; deeper ones are type errors anyway.
    value = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      for (const [key, field] of Object.entries(value)) {
        if (typeof field === 'number')
          (value as Record<string, unknown>)[key] = new NumberText(String(field));
      }
    }
  }
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value) || value instanceof NumberText) {
    throw fail(`json: cannot unmarshal ${kindOf(value)} into Go value of type model.${struct.name}`);
  }
  const result: Record<string, string | string[] | number | null> = {};
  let firstError: BadRequestError | undefined;
  const names = Object.keys(struct.fields);
  for (const [key, fieldValue] of Object.entries(value)) {
    const field = names.find((f) => f === key) ?? names.find((f) => f.toLowerCase() === key.toLowerCase());
    if (field === undefined) continue;
    const kind = struct.fields[field] as GoKind;
    const decoded = decodeField(kind, fieldValue);
    if (decoded === 'mismatch') {
      const shown = fieldValue instanceof NumberText ? `number ${fieldValue.text}` : kindOf(fieldValue);
      firstError ??= fail(
        `json: cannot unmarshal ${shown} into Go struct field ${struct.name}.${field} of type ${kind}`,
      );
      continue;
    }
    result[field] = decoded;
  }
  if (firstError) throw firstError;
  return result;
}

// A Go struct as a body schema, read with seed 002's decoder: any subset of the fields, null
// for any of them (a field's zero value), other keys ignored. `name` is the Go type's name,
// which encoding/json's messages show.
export function goStruct<P extends TProperties>(
  name: string,
  fields: P,
  options: Readonly<{ example: Record<string, unknown>; detailed?: boolean }>,
) {
  const properties = Object.fromEntries(
    Object.entries(fields).map(([field, schema]) => [
      field,
      Type.Optional(Type.Union([schema, Type.Null()])),
    ]),
  ) as { [K in keyof P]: TOptional<TUnion<[P[K], TNull]>> };
  const schema: TObject<typeof properties> = Type.Object(properties, {
    examples: [options.example],
    title: name,
  });
  const struct: Struct = {
    name,
    fields: Object.fromEntries(Object.entries(schema.properties).map(([f, p]) => [f, goKind(f, p)])),
  };
  return withReader(
    schema,
    (body) => decodeGoJson(body, struct, options.detailed ?? false) as Static<typeof schema>,
  );
}
