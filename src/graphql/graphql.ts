// A GraphQL request, as POST's JSON body and as GET's query string, read before Mercurius sees
// it. Mercurius caches every distinct query text (its document, and the errors of one that
// failed validation) keyed by the text itself, parses without a token limit, and takes a
// query that is not GraphQL but parses as JSON for a document already parsed. Unbounded, a
// dozen unique 1 MB queries held gigabytes and crashed the process, each held the event loop
// for seconds, and a JSON query was a 500. The limits here bound all three.
import { GraphQLError, getOperationAST, parse } from 'graphql';
import { Type } from 'typebox';
import { BadRequestError } from '../platform/errors.ts';
import { plainReader, type RawPart, withPartReader, withReader } from '../platform/request.ts';

// The longest query text, and the most tokens its document may have (graphql-armor's default;
// the full introspection query has 184). At these, a parse takes about a millisecond and a
// cached document (its syntax tree with locations, about 350 bytes a token) at most some
// 380 KiB.
export const MAX_QUERY_LENGTH = 32_768;
export const MAX_QUERY_TOKENS = 1000;
// How many distinct queries Mercurius keeps parsed and compiled, and as many refused ones (its
// LRU holds up to twice this): a client that inlines its arguments (G1: 500 movie ids) still
// finds its documents there. Entries are counted, not weighed: thousands of distinct maximal
// queries could fill them with some 760 MiB (docs/decisions.md).
const QUERY_CACHE_SIZE = 512;

const PARSE_OPTIONS = { maxTokens: MAX_QUERY_TOKENS };

// How Mercurius parses, caches and compiles queries (a document used twice is compiled).
export const QUERY_HANDLING = { jit: 1, cache: QUERY_CACHE_SIZE, graphql: { parseOptions: PARSE_OPTIONS } };

function checkLength(query: string): void {
  if (query.length > MAX_QUERY_LENGTH)
    throw new BadRequestError(`query must not be longer than ${MAX_QUERY_LENGTH} characters`);
}

// A JSON value starts with one of these; a GraphQL document only with `{` and a name, `...` or
// a comment after it, so `{"` and `{}` are JSON's alone.
const JSON_START = /^[\s\ufeff]*(?:[["\-\d]|true|false|null|\{\s*["}])/;

// No JSON text is a GraphQL document, so one that parses as JSON is refused here with the
// syntax error GraphQL finds in it. Any other query goes on to Mercurius unparsed: POST is
// GraphQL's everyday path, and its documents are cached.
function refuseJson(query: string): void {
  if (!JSON_START.test(query)) return;
  try {
    JSON.parse(query);
  } catch {
    return;
  }
  parse(query, PARSE_OPTIONS);
}

const QUERY_DESCRIPTION = `a GraphQL document of at most ${MAX_QUERY_LENGTH} characters and ${MAX_QUERY_TOKENS} tokens`;

const GraphqlRequestSchema = Type.Object({
  query: Type.String({ description: QUERY_DESCRIPTION }),
  variables: Type.Optional(Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()])),
  operationName: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});

const readPlain = plainReader(GraphqlRequestSchema, {
  notObject: 'body must be a JSON object (batches are not supported)',
  invalid: {
    query: 'body must contain a "query" string',
    variables: '"variables" must be a JSON object',
    operationName: '"operationName" must be a string',
  },
});

// The root hooks drop Content-Type and the catch-all parser keeps bodies as bytes (app.ts);
// a GraphQL POST body is JSON whatever the client labelled it. Other keys (extensions) pass.
export const GraphqlRequestBody = withReader(GraphqlRequestSchema, (body) => {
  const request = readPlain(body);
  checkLength(request.query);
  refuseJson(request.query);
  return request;
});

const GraphqlQueryStringSchema = Type.Object({
  query: Type.String({ description: QUERY_DESCRIPTION }),
  operationName: Type.Optional(Type.String()),
  variables: Type.Optional(Type.String({ description: 'a JSON object' })),
  extensions: Type.Optional(Type.String({ description: 'a JSON object' })),
});

function checkJsonObject(name: string, text: string | undefined): void {
  if (text === undefined) return;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (value !== null && (typeof value !== 'object' || Array.isArray(value)))
    throw new BadRequestError(`"${name}" must be a JSON object`);
}

// The operation a GET runs, as graphql-js names its absence. Mercurius looks it up to refuse
// a mutation by GET, and without one it failed (a 500).
function checkOperation(query: string, operationName: string | undefined): void {
  const document = parse(query, PARSE_OPTIONS);
  if (getOperationAST(document, operationName)) return;
  if (operationName !== undefined) throw new GraphQLError(`Unknown operation named "${operationName}".`);
  const operations = document.definitions.filter((d) => d.kind === 'OperationDefinition').length;
  throw new GraphQLError(
    operations > 1
      ? 'Must provide operation name if query contains multiple operations.'
      : 'Must provide an operation.',
  );
}

// GET's query string: each key at most once (a repeated one would reach Mercurius as an
// array), the query parsed here (GET is the rare way; its document is parsed again, or
// found in the cache, by Mercurius), variables and extensions JSON objects. The values stay
// text: Mercurius decodes variables and extensions itself.
export const GraphqlQueryString = withPartReader(GraphqlQueryStringSchema, (part: RawPart) => {
  for (const [name, value] of Object.entries(part)) {
    if (Array.isArray(value)) throw new BadRequestError(`query string must not repeat "${name}"`);
  }
  const { query, operationName, variables, extensions } = part as Record<string, string | undefined>;
  if (query === undefined) throw new BadRequestError('query string must contain "query"');
  checkLength(query);
  checkOperation(query, operationName);
  checkJsonObject('variables', variables);
  checkJsonObject('extensions', extensions);
  return part;
});
