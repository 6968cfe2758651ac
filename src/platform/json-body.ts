// Request bodies decoded with the semantics of the book's readJSON helper, which wraps Go's
// json.Decoder with DisallowUnknownFields: the same errors, in the same priority, with the
// same character offsets. Go reports an offset as the count of bytes read when the error is
// found, i.e. the 1-based byte position of the offending character.
//
// Decoding happens in three steps, as in Go:
//   1. scan the first JSON value for syntax errors (the only step that sees bytes);
//   2. decode it into the input shape: the first type error or unknown key wins, except that
//      a field's own decoder failing (runtime) aborts at once and wins over earlier ones;
//   3. anything but white space after that value means more than one value.
import type { Static, TObject } from 'typebox';
import { BadRequestError } from './errors.ts';
import { withReader } from './request.ts';
import { INT32_MAX, INT32_MIN, RUNTIME_PATTERN } from './schemas.ts';

export const MAX_BODY_BYTES = 1_048_576;
const MAX_NESTING_DEPTH = 10_000;

// Field kinds an input shape can use. `int32` follows Go's int32; `runtime` is the book's
// Runtime type ("<int> mins"); a `?` suffix means a Go pointer field (PATCH inputs), for
// which null leaves the field unset instead of calling the type's own decoder.
export type FieldKind = 'string' | 'int32' | 'string[]' | 'runtime';
export type InputShape = Readonly<Record<string, FieldKind | `${FieldKind}?`>>;

type KindValue<K> = K extends 'string' | 'string?'
  ? string
  : K extends 'int32' | 'int32?' | 'runtime' | 'runtime?'
    ? number
    : K extends 'string[]' | 'string[]?'
      ? string[]
      : never;

// Fields absent from the body, or null, are undefined: Go's zero value or nil pointer.
export type Decoded<S extends InputShape> = { [K in keyof S]?: KindValue<S[K]> };

export const ERR_INVALID_RUNTIME = 'invalid runtime format';

class SyntaxFailure {
  readonly offset: number;
  constructor(offset: number) {
    this.offset = offset;
  }
}
class UnexpectedEnd {}

const isSpace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHex = (c: number) => isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

// Validates the first JSON value in `buf` starting at `start` and returns the index just
// past it. Throws SyntaxFailure (with Go's offset) or UnexpectedEnd.
export function scanValue(buf: Uint8Array, start = 0): number {
  let i = start;
  const stack: number[] = []; // 0x7b '{' or 0x5b '['
  const at = (index: number): number => {
    if (index >= buf.length) throw new UnexpectedEnd();
    return buf[index] as number;
  };
  const fail = (index: number) => new SyntaxFailure(index - start + 1);
  const skipSpace = () => {
    while (i < buf.length && isSpace(buf[i] as number)) i++;
  };
  const literal = (word: string) => {
    for (let k = 0; k < word.length; k++) {
      if (at(i) !== word.charCodeAt(k)) throw fail(i);
      i++;
    }
  };
  const string = () => {
    i++; // opening quote
    for (;;) {
      const c = at(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) throw fail(i);
      if (c === 0x5c) {
        i++;
        const e = at(i);
        if (e === 0x75) {
          for (let k = 1; k <= 4; k++) if (!isHex(at(i + k))) throw fail(i + k);
          i += 5;
        } else if ([0x22, 0x5c, 0x2f, 0x62, 0x66, 0x6e, 0x72, 0x74].includes(e)) {
          i++;
        } else {
          throw fail(i);
        }
      } else {
        i++;
      }
    }
  };
  // A number's end is only known from the byte after it; at the very end of the body
  // Go accepts a complete top-level number (it feeds a space at EOF).
  const number = () => {
    const peek = () => (i < buf.length ? (buf[i] as number) : -1);
    const needDigit = () => {
      if (i >= buf.length) throw new UnexpectedEnd();
      if (!isDigit(buf[i] as number)) throw fail(i);
    };
    if (peek() === 0x2d) {
      i++;
      needDigit();
    }
    if (peek() === 0x30) i++;
    else while (isDigit(peek())) i++;
    if (peek() === 0x2e) {
      i++;
      needDigit();
      while (isDigit(peek())) i++;
    }
    if (peek() === 0x65 || peek() === 0x45) {
      i++;
      if (peek() === 0x2b || peek() === 0x2d) i++;
      needDigit();
      while (isDigit(peek())) i++;
    }
  };
  const key = () => {
    skipSpace();
    if (at(i) !== 0x22) throw fail(i);
    string();
    skipSpace();
    if (at(i) !== 0x3a) throw fail(i);
    i++;
  };
  // Scans one value; returns true when it opened a non-empty container whose first
  // member must be scanned next.
  const value = (): boolean => {
    skipSpace();
    const c = at(i);
    if (c === 0x7b || c === 0x5b) {
      if (stack.length >= MAX_NESTING_DEPTH) throw fail(i);
      i++;
      skipSpace();
      if (at(i) === (c === 0x7b ? 0x7d : 0x5d)) {
        i++;
        return false;
      }
      stack.push(c);
      if (c === 0x7b) key();
      return true;
    }
    if (c === 0x22) string();
    else if (c === 0x2d || isDigit(c)) number();
    else if (c === 0x74) literal('true');
    else if (c === 0x66) literal('false');
    else if (c === 0x6e) literal('null');
    else throw fail(i);
    return false;
  };

  // Iterative, so deeply nested input cannot overflow the call stack.
  for (;;) {
    if (value()) continue;
    for (;;) {
      if (stack.length === 0) return i;
      skipSpace();
      const c = at(i);
      const open = stack[stack.length - 1];
      if (c === 0x2c) {
        i++;
        if (open === 0x7b) key();
        break;
      }
      if ((open === 0x7b && c === 0x7d) || (open === 0x5b && c === 0x5d)) {
        stack.pop();
        i++;
        continue;
      }
      throw fail(i);
    }
  }
}

// A number written with a fraction or exponent (1.0, 1e3): Go refuses it for an integer
// field even when its value is whole, so it must stay distinguishable after parsing.
class NonIntegerNumber {}

type JsonValue =
  | null
  | boolean
  | number
  | string
  | NonIntegerNumber
  | JsonValue[]
  | { [key: string]: JsonValue };

class FieldTypeError {
  readonly field: string;
  constructor(field: string) {
    this.field = field;
  }
}

// "107 mins" → 107, with Go's strconv.ParseInt(_, 10, 32) rules for the number.
export function parseRuntime(value: unknown): number {
  if (typeof value !== 'string') throw new BadRequestError(ERR_INVALID_RUNTIME);
  const parts = value.split(' ');
  if (parts.length !== 2 || parts[1] !== 'mins' || !/^[+-]?\d+$/.test(parts[0] as string)) {
    throw new BadRequestError(ERR_INVALID_RUNTIME);
  }
  const mins = Number(parts[0]);
  if (mins < -2147483648 || mins > 2147483647) throw new BadRequestError(ERR_INVALID_RUNTIME);
  return mins;
}

function decodeField(field: string, kind: string, value: JsonValue): unknown {
  const pointer = kind.endsWith('?');
  const base = pointer ? kind.slice(0, -1) : kind;
  if (base === 'runtime') {
    // The book's Runtime implements json.Unmarshaler, which Go calls even for null
    // unless the field is a pointer.
    if (value === null && pointer) return undefined;
    return parseRuntime(value);
  }
  if (value === null) return undefined;
  switch (base) {
    case 'string':
      if (typeof value !== 'string') throw new FieldTypeError(field);
      return value;
    case 'int32':
      if (typeof value !== 'number' || value < -2147483648 || value > 2147483647)
        throw new FieldTypeError(field);
      return value;
    case 'string[]':
      if (!Array.isArray(value)) throw new FieldTypeError(field);
      return value.map((item) => {
        if (item === null) return '';
        if (typeof item !== 'string') throw new FieldTypeError(field);
        return item;
      });
    default:
      throw new Error(`unknown field kind ${kind}`);
  }
}

// V8 passes a reviver the source text of each number (JSON.parse source text access).
// The reviver walk is recursive and overflows the stack on very deep documents (Go allows
// 10,000 levels); those are parsed without it, losing only the 1.0-versus-1 distinction.
function parseJson(text: string): JsonValue {
  const reviver = (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === 'number' && context?.source !== undefined && !/^-?\d+$/.test(context.source)
      ? new NonIntegerNumber()
      : value;
  try {
    return JSON.parse(text, reviver as (key: string, value: unknown) => unknown) as JsonValue;
  } catch (err) {
    if (err instanceof RangeError) return JSON.parse(text) as JsonValue;
    throw err;
  }
}

// Go's strconv.Quote, which the book's "unknown key" message uses (%q).
export function goQuote(text: string): string {
  let out = '"';
  for (const char of text) {
    const cp = char.codePointAt(0) as number;
    const simple: Record<string, string> = {
      '"': '\\"',
      '\\': '\\\\',
      '\x07': '\\a',
      '\b': '\\b',
      '\f': '\\f',
      '\n': '\\n',
      '\r': '\\r',
      '\t': '\\t',
      '\v': '\\v',
    };
    if (simple[char] !== undefined) out += simple[char];
    else if (cp >= 0xd800 && cp <= 0xdfff) out += '\ufffd';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if (cp === 0x20 || /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(char)) out += char;
    else if (cp <= 0xffff) out += `\\u${cp.toString(16).padStart(4, '0')}`;
    else out += `\\U${cp.toString(16).padStart(8, '0')}`;
  }
  return `${out}"`;
}

export function decodeJsonBody<S extends InputShape>(body: Buffer | undefined, shape: S): Decoded<S> {
  if (body === undefined || body.every(isSpace)) throw new BadRequestError('body must not be empty');
  if (body.length > MAX_BODY_BYTES)
    throw new BadRequestError(`body must not be larger than ${MAX_BODY_BYTES} bytes`);

  let end: number;
  try {
    end = scanValue(body);
  } catch (err) {
    if (err instanceof SyntaxFailure) {
      throw new BadRequestError(`body contains badly-formed JSON (at character ${err.offset})`);
    }
    if (err instanceof UnexpectedEnd) throw new BadRequestError('body contains badly-formed JSON');
    throw err;
  }

  const text = body.subarray(0, end).toString('utf8');
  const result = decodeTopLevel(parseJson(text), shape, body, end);

  for (let i = end; i < body.length; i++) {
    if (!isSpace(body[i] as number)) throw new BadRequestError('body must only contain a single JSON value');
  }
  return result;
}

function decodeTopLevel<S extends InputShape>(
  value: JsonValue,
  shape: S,
  body: Buffer,
  end: number,
): Decoded<S> {
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value) || value instanceof NonIntegerNumber) {
    // Go reports where it was when it noticed: just after '[' for an array, just after
    // the last byte of a literal otherwise.
    let first = 0;
    while (isSpace(body[first] as number)) first++;
    const offset = Array.isArray(value) ? first + 1 : end;
    throw new BadRequestError(`body contains incorrect JSON type (at character ${offset})`);
  }

  const result: Record<string, unknown> = {};
  let firstError: BadRequestError | undefined;
  const fields = Object.keys(shape);
  for (const [key, fieldValue] of Object.entries(value)) {
    // Go matches keys to fields exactly first, then case-insensitively.
    const field = fields.find((f) => f === key) ?? fields.find((f) => f.toLowerCase() === key.toLowerCase());
    if (field === undefined) {
      firstError ??= new BadRequestError(`body contains unknown key ${goQuote(key)}`);
      continue;
    }
    try {
      const decoded = decodeField(field, shape[field] as string, fieldValue);
      if (decoded !== undefined) result[field] = decoded;
    } catch (err) {
      if (!(err instanceof FieldTypeError)) throw err;
      firstError ??= new BadRequestError(
        `body contains incorrect JSON type for field ${JSON.stringify(err.field)}`,
      );
    }
  }
  if (firstError) throw firstError;
  return result as Decoded<S>;
}

type JsonSchema = {
  type?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
};

// The decoder's field kind for one property of a body schema. A property the schema does not
// require is Go's pointer field: null leaves it unset.
function fieldKind(name: string, property: JsonSchema, required: boolean): FieldKind | `${FieldKind}?` {
  const schema = property.anyOf?.find((member) => member.type !== 'null') ?? property;
  let kind: FieldKind | undefined;
  if (schema.type === 'string') kind = schema.pattern === RUNTIME_PATTERN ? 'runtime' : 'string';
  else if (schema.type === 'integer' && schema.minimum === INT32_MIN && schema.maximum === INT32_MAX)
    kind = 'int32';
  else if (schema.type === 'array' && schema.items?.type === 'string') kind = 'string[]';
  if (kind === undefined) throw new Error(`body field "${name}" has a schema the decoder has no kind for`);
  return required ? kind : `${kind}?`;
}

// The decoder's input shape, read off the route's TypeBox body schema.
export function inputShape(schema: TObject): InputShape {
  const required = new Set<string>(schema.required ?? []);
  return Object.fromEntries(
    Object.entries(schema.properties).map(([name, property]) => [
      name,
      fieldKind(name, property as JsonSchema, required.has(name)),
    ]),
  );
}

// A decoded body: every field may be absent (Go's zero value), none is null.
export type DecodedBody<T extends TObject> = { [K in keyof Static<T>]?: NonNullable<Static<T>[K]> };

const shapes = new WeakMap<TObject, InputShape>();

// Decodes `body` by the rules of the route's body schema, with the book's messages.
export function decodeBody<T extends TObject>(body: Buffer | undefined, schema: T): DecodedBody<T> {
  let shape = shapes.get(schema);
  if (shape === undefined) {
    shape = inputShape(schema);
    shapes.set(schema, shape);
  }
  return decodeJsonBody(body, shape) as DecodedBody<T>;
}

// A body schema read with the book's rules (platform/request.ts): the route's handler finds
// the decoded body in request.body.
export function bookBody<T extends TObject>(schema: T): T {
  return withReader(schema, (body) => decodeBody(body, schema) as Static<T>);
}
