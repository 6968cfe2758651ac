// Schema pieces every route uses. A route's schema is the one description of its wire
// shape: Fastify serializes responses with it, the OpenAPI document is generated from it, the
// typed client from that document, and requests are read by it (platform/request.ts), with
// the messages of their API rather than Ajv's.
import { type TSchema, Type } from 'typebox';
import { parseId } from './http.ts';
import { withPartReader } from './request.ts';

export const INT32_MIN = -2147483648;
export const INT32_MAX = 2147483647;

// A JSON integer Go would decode into an int32.
export const Int32 = (options: { description?: string; examples?: number[] } = {}) =>
  Type.Integer({ minimum: INT32_MIN, maximum: INT32_MAX, ...options });

export const RUNTIME_PATTERN = '^[0-9]+ mins$';

// The book's Runtime: "<minutes> mins" on the wire, a number of minutes once decoded.
export const Runtime = Type.Unsafe<number>({
  type: 'string',
  pattern: RUNTIME_PATTERN,
  description: 'running time as "<minutes> mins"',
  examples: ['107 mins'],
});

const RequestIdHeader = {
  'X-Request-Id': {
    type: 'string',
    required: true,
    description:
      "the client's own X-Request-Id when it is 1-128 characters of A-Z a-z 0-9 . _ : -, a fresh UUID otherwise",
  },
};

export const ErrorEnvelope = Type.Object(
  { error: Type.String({ examples: ['the requested resource could not be found'] }) },
  { additionalProperties: false },
);

export const ValidationEnvelope = Type.Object(
  {
    error: Type.Object(
      {},
      { additionalProperties: Type.String(), examples: [{ title: 'must be provided' }] },
    ),
  },
  { additionalProperties: false },
);

export const MessageEnvelope = Type.Object({ message: Type.String() }, { additionalProperties: false });

// A header a response always carries is `required`.
type Headers = Readonly<Record<string, { type: string; description: string; required?: boolean }>>;

// A response of `schema` with a description and its headers, X-Request-Id always among them.
export function response(schema: TSchema, description: string, headers: Headers = {}): TSchema {
  return { ...schema, description, headers: { ...RequestIdHeader, ...headers } } as TSchema;
}

// A response with no body (OPTIONS, 204).
export function emptyResponse(description: string, headers: Headers = {}): TSchema {
  return { type: 'null', description, headers: { ...RequestIdHeader, ...headers } } as TSchema;
}

// The IETF draft's RateLimit-* fields come from the request-rate limiter only, not from
// the failed-login throttle, so they are optional.
export const RATE_LIMITED_HEADERS: Headers = {
  'Retry-After': {
    type: 'integer',
    description: 'seconds until a request will be accepted again',
    required: true,
  },
  'RateLimit-Limit': { type: 'integer', description: "the client's burst: requests it may make at once" },
  'RateLimit-Remaining': { type: 'integer', description: 'requests left now: 0' },
  'RateLimit-Reset': { type: 'integer', description: 'seconds until the next request is accepted' },
};

const ERRORS: Readonly<Record<number, () => TSchema>> = {
  400: () =>
    response(
      ErrorEnvelope,
      'The body is malformed: badly-formed JSON, a wrong JSON type, an unknown key, more than one value, over 1 MiB, or an invalid runtime',
    ),
  401: () =>
    response(
      ErrorEnvelope,
      'invalid or missing authentication token (any route, with WWW-Authenticate: Bearer), invalid authentication credentials, or you must be authenticated to access this resource',
      {
        'WWW-Authenticate': {
          type: 'string',
          description: '"Bearer" when the token is malformed, unknown or expired',
        },
      },
    ),
  403: () =>
    response(ErrorEnvelope, 'The account is not activated, or lacks the permission this route needs'),
  404: () => response(ErrorEnvelope, 'the requested resource could not be found'),
  409: () => response(ErrorEnvelope, 'unable to update the record due to an edit conflict, please try again'),
  422: () => response(ValidationEnvelope, 'Failed validation: one message per failing field'),
  429: () => response(ErrorEnvelope, 'rate limit exceeded', RATE_LIMITED_HEADERS),
  500: () =>
    response(
      ErrorEnvelope,
      'the server encountered a problem and could not process your request (details in the log only)',
    ),
};

// Every route can answer 401 (a bad token is refused everywhere) and 429. Routes that query
// the database list 500 too: a failing database is the one way they answer it.
const ALWAYS = [401, 429] as const;

// The error responses of a route: the given statuses plus those every route has.
export function errors(...statuses: number[]): Record<number, TSchema> {
  const all = [...new Set([...statuses, ...ALWAYS])].sort();
  return Object.fromEntries(all.map((status) => [status, (ERRORS[status] as () => TSchema)()]));
}

// The security requirement of routes that need a token, and of those where one is optional.
type Security = ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
// Any enabled credential: a bearer (book token, JWT, OIDC access token, API key) or X-API-Key.
export const BEARER_REQUIRED: Security = [{ bearerToken: [] }, { apiKey: [] }];
export const BEARER_OPTIONAL: Security = [{}, { bearerToken: [] }, { apiKey: [] }];
// Routes that never look at credentials (seed 002's register and login).
export const NO_CREDENTIALS: Security = [];

// A path parameter holding a record id, read as the book's readIDParam reads it: anything
// but a positive int64 is answered with 404, so the document says what the route accepts.
// The id stays a string, so ids beyond 2^53 reach PostgreSQL intact.
export const IdParams = withPartReader(
  Type.Object({
    id: Type.Integer({ minimum: 1, format: 'int64', description: 'the record id', examples: [1] }),
  }),
  (part) => ({ id: parseId((part.id as string | undefined) ?? '') }),
);
