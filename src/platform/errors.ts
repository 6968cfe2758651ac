// Domain errors know nothing of HTTP. ERROR_RESPONSES is the one table that turns them
// into status codes and the book's messages; nothing else writes an error body.

// The reason phrases of node:http, read from the CommonJS module: in Node 24 an ES import of
// node:http reads its lazy WebSocket property, which loads Node's bundled undici (about 13 MiB
// resident, nodejs/node#59686), and this module is loaded by the cluster primary too.
const httpStatusText = (status: number): string | undefined =>
  process.getBuiltinModule('node:http').STATUS_CODES[status];

export class NotFoundError extends Error {
  constructor() {
    super('record not found');
  }
}

export class EditConflictError extends Error {
  constructor() {
    super('edit conflict');
  }
}

// A request whose shape is wrong (400); the message is the client-facing text.
export class BadRequestError extends Error {}

export type FieldErrors = Record<string, string>;

// Business-rule failures (422), one message per field.
export class ValidationError extends Error {
  readonly fields: FieldErrors;
  constructor(fields: FieldErrors) {
    super('validation failed');
    // In key order, as the book's Go encodes its map of errors (encoding/json sorts map keys).
    this.fields = Object.fromEntries(Object.entries(fields).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  }
}

// A dependency (the database) cannot serve the request now; the message is client-facing.
// With `retryAfterSeconds`, the answer says when to try again.
export class UnavailableError extends Error {
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, retryAfterSeconds?: number, options?: ErrorOptions) {
    super(message, options);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

// A client that hangs up in the middle of its body breaks the stream a route reads: its
// doing, not a fault of ours, whatever the reading code threw (and nobody reads the answer).
export class BodyAbortedError extends BadRequestError {
  constructor() {
    super('the request body ended before it was complete');
  }
}

// How long a client should wait before retrying a request refused by an outage (503): long
// enough for a database restart or a failover, short enough not to matter once it is back.
export const RETRY_AFTER_SECONDS = 5;

// Socket errors of a connection to the database that cannot be made or was lost. ECONNRESET
// counts only with a syscall: a client aborting its request body raises ECONNRESET too.
// ENOENT counts only from connect: a Unix socket whose server is down has no file (the
// embedded database's default), while a missing file of ours is not an outage.
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
]);

// SQLSTATEs of a server that is shutting down, starting up, out of connection slots, or of a
// lost connection (class 08).
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

// node-postgres's own errors for a connection that timed out, ended or broke.
const UNREACHABLE_MESSAGES = [
  'timeout exceeded when trying to connect',
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
];

// Is `err` the database being unreachable (down, restarting, refusing connections), as opposed
// to a query of ours failing? Such a request is answered 503 with Retry-After, not 500.
export function isDatabaseUnavailable(err: unknown, depth = 0): boolean {
  if (!(err instanceof Error) || depth > 3) return false;
  const { code, syscall } = err as { code?: unknown; syscall?: unknown };
  if (typeof code === 'string') {
    if (UNREACHABLE_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code)) return true;
    if (code === 'ECONNRESET' && typeof syscall === 'string') return true;
    if (code === 'ENOENT' && syscall === 'connect') return true;
    if (/^08[0-9A-Z]{3}$/.test(code)) return true;
  }
  if (UNREACHABLE_MESSAGES.some((message) => err.message.startsWith(message))) return true;
  if (err instanceof AggregateError && err.errors.some((e) => isDatabaseUnavailable(e, depth + 1)))
    return true;
  return isDatabaseUnavailable(err.cause, depth + 1);
}

// Is `err` PostgreSQL cancelling a statement at its statement_timeout (SQLSTATE 57014, which a
// cancel request shares: the message tells them apart)? The database is too busy to answer in
// time; another try may well succeed, so it is a 503 with Retry-After, not a fault of ours.
export function isStatementTimeout(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return (err as { code?: unknown }).code === '57014' && err.message.includes('statement timeout');
}

// A request body over a route's own size limit (413); the message is client-facing.
export class PayloadTooLargeError extends Error {}

// A body whose content is not of a type the route accepts (415); the message is client-facing.
export class UnsupportedMediaTypeError extends Error {}

// A Range request none of whose bytes exist in a representation of `size` bytes (416).
export class RangeNotSatisfiableError extends Error {
  readonly size: number;
  constructor(size: number) {
    super('requested range not satisfiable');
    this.size = size;
  }
}

// The one thing a route does at a time is already being done (409); the message is client-facing.
export class BusyError extends Error {}

export class MethodNotAllowedError extends Error {
  readonly method: string;
  readonly allow: string;
  constructor(method: string, allow: string) {
    super('method not allowed');
    this.method = method;
    this.allow = allow;
  }
}

export class RateLimitedError extends Error {
  readonly retryAfterSeconds: number;
  // The burst of the request-rate bucket that refused; absent for other limits (logins).
  readonly limit: number | undefined;
  constructor(retryAfterSeconds: number, limit?: number) {
    super('rate limit exceeded');
    this.retryAfterSeconds = retryAfterSeconds;
    this.limit = limit;
  }
}

// Retry-After, and for the request-rate limiter the IETF draft's RateLimit-* fields: the
// bucket's size, nothing left, and when the next request will be accepted.
export function rateLimitHeaders(err: RateLimitedError): Record<string, string> {
  const retryAfter = String(err.retryAfterSeconds);
  if (err.limit === undefined) return { 'retry-after': retryAfter };
  return {
    'retry-after': retryAfter,
    'ratelimit-limit': String(err.limit),
    'ratelimit-remaining': '0',
    'ratelimit-reset': retryAfter,
  };
}

export class InvalidCredentialsError extends Error {
  constructor() {
    super('invalid credentials');
  }
}

// Why a credential was refused. The book says the same for the first three; the products
// API tells a malformed Authorization header and an expired JWT apart. 'unlinked': a valid
// provider (OIDC) token whose e-mail has a local account the identity is not linked to;
// both APIs tell the user how to link it.
export type CredentialFailure = 'format' | 'invalid' | 'expired' | 'unlinked';

// A bearer token (or API key) that is malformed, unknown or expired.
export class InvalidAuthenticationTokenError extends Error {
  readonly reason: CredentialFailure;
  constructor(reason: CredentialFailure = 'invalid') {
    super('invalid authentication token');
    this.reason = reason;
  }
}

export class AuthenticationRequiredError extends Error {
  constructor() {
    super('authentication required');
  }
}

export class InactiveAccountError extends Error {
  constructor() {
    super('account not activated');
  }
}

// A refusal that is not about the account's permissions; the message says what is missing.
export class ForbiddenError extends Error {}

export class NotPermittedError extends Error {
  constructor() {
    super('permission missing');
  }
}

export type ErrorResponse = Readonly<{
  status: number;
  error: string | FieldErrors;
  headers?: Readonly<Record<string, string>>;
}>;

export const MESSAGES = {
  notFound: 'the requested resource could not be found',
  serverError: 'the server encountered a problem and could not process your request',
  unavailable: 'the service is temporarily unavailable, please try again later',
  editConflict: 'unable to update the record due to an edit conflict, please try again',
  rateLimited: 'rate limit exceeded',
  invalidCredentials: 'invalid authentication credentials',
  invalidToken: 'invalid or missing authentication token',
  authenticationRequired: 'you must be authenticated to access this resource',
  inactiveAccount: 'your user account must be activated to access this resource',
  notPermitted: "your user account doesn't have the necessary permissions to access this resource",
  identityNotLinked:
    'an account with this email address exists: sign in to it and link this identity with POST /v1/users/identities',
} as const;

// biome-ignore lint/suspicious/noExplicitAny: constructors of any error class
type ErrorClass = abstract new (...args: any[]) => Error;

export const ERROR_RESPONSES: ReadonlyArray<readonly [ErrorClass, (err: never) => ErrorResponse]> = [
  [NotFoundError, () => ({ status: 404, error: MESSAGES.notFound })],
  [
    MethodNotAllowedError,
    (err: MethodNotAllowedError) => ({
      status: 405,
      error: `the ${err.method} method is not supported for this resource`,
      headers: { allow: err.allow },
    }),
  ],
  [BadRequestError, (err: BadRequestError) => ({ status: 400, error: err.message })],
  [ValidationError, (err: ValidationError) => ({ status: 422, error: err.fields })],
  [PayloadTooLargeError, (err: PayloadTooLargeError) => ({ status: 413, error: err.message })],
  [UnsupportedMediaTypeError, (err: UnsupportedMediaTypeError) => ({ status: 415, error: err.message })],
  [
    RangeNotSatisfiableError,
    (err: RangeNotSatisfiableError) => ({
      status: 416,
      error: 'the requested range is not satisfiable',
      headers: { 'content-range': `bytes */${err.size}` },
    }),
  ],
  [BusyError, (err: BusyError) => ({ status: 409, error: err.message })],
  [
    UnavailableError,
    (err: UnavailableError) =>
      err.retryAfterSeconds === undefined
        ? { status: 503, error: err.message }
        : { status: 503, error: err.message, headers: { 'retry-after': String(err.retryAfterSeconds) } },
  ],
  [EditConflictError, () => ({ status: 409, error: MESSAGES.editConflict })],
  [InvalidCredentialsError, () => ({ status: 401, error: MESSAGES.invalidCredentials })],
  [
    InvalidAuthenticationTokenError,
    (err: InvalidAuthenticationTokenError) => ({
      status: 401,
      error: err.reason === 'unlinked' ? MESSAGES.identityNotLinked : MESSAGES.invalidToken,
      headers: { 'www-authenticate': 'Bearer' },
    }),
  ],
  [AuthenticationRequiredError, () => ({ status: 401, error: MESSAGES.authenticationRequired })],
  [InactiveAccountError, () => ({ status: 403, error: MESSAGES.inactiveAccount })],
  [NotPermittedError, () => ({ status: 403, error: MESSAGES.notPermitted })],
  [ForbiddenError, (err: ForbiddenError) => ({ status: 403, error: err.message })],
  [
    RateLimitedError,
    (err: RateLimitedError) => ({
      status: 429,
      error: MESSAGES.rateLimited,
      headers: rateLimitHeaders(err),
    }),
  ],
];

// Errors Fastify itself raises before a handler runs, by their code, where the book has a
// message of its own for the case.
const FRAMEWORK_ERRORS: Readonly<Record<string, ErrorResponse>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 400, error: 'body must not be larger than 1048576 bytes' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, error: 'body contains badly-formed JSON' },
  // @fastify/compress's, for a request body it cannot decode: a body we cannot read, as
  // badly-formed JSON is (its own 415 and "bad request" were documented nowhere).
  FST_CP_ERR_INVALID_CONTENT_ENCODING: { status: 400, error: 'body has an unsupported Content-Encoding' },
  FST_CP_ERR_INVALID_CONTENT: { status: 400, error: 'body could not be decoded by its Content-Encoding' },
  // A path that cannot be decoded, or whose parameter is longer than any id, names no resource.
  FST_ERR_BAD_URL: { status: 404, error: MESSAGES.notFound },
  FST_ERR_MAX_PARAM_LENGTH: { status: 404, error: MESSAGES.notFound },
};

const SERVER_ERROR: ErrorResponse = { status: 500, error: MESSAGES.serverError };

export function errorResponse(err: unknown): ErrorResponse {
  for (const [errorClass, toResponse] of ERROR_RESPONSES) {
    if (err instanceof errorClass) return (toResponse as (e: Error) => ErrorResponse)(err);
  }
  const { code, statusCode } = (err ?? {}) as { code?: unknown; statusCode?: unknown };
  if (typeof code === 'string' && code in FRAMEWORK_ERRORS) return FRAMEWORK_ERRORS[code] as ErrorResponse;
  // Any other client error Fastify raises keeps its status, in our envelope.
  if (typeof code === 'string' && code.startsWith('FST_') && typeof statusCode === 'number') {
    if (statusCode >= 400 && statusCode < 500) {
      return { status: statusCode, error: (httpStatusText(statusCode) ?? 'bad request').toLowerCase() };
    }
  }
  if (isDatabaseUnavailable(err) || isStatementTimeout(err))
    return errorResponse(new UnavailableError(MESSAGES.unavailable, RETRY_AFTER_SECONDS));
  return SERVER_ERROR;
}
