// Seed 002's API under /api/v1, as an encapsulated Fastify plugin: its own error handler
// and not-found handler answer {code, message} with the seed's statuses and texts, and
// nothing here changes the book's {"error": ...} on /v1. Authentication runs in the app's
// root hook; its errors reach this plugin's error handler for every path under the prefix.
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { EmailTakenError } from '../accounts/accounts.ts';
import type { Jwts } from '../auth/jwt.ts';
import { OrderConflictError, OrderNotFoundError } from '../orders/order.ts';
import { orderMetrics } from '../orders/orders.metrics.ts';
import type { Db } from '../platform/db.ts';
import {
  AuthenticationRequiredError,
  BadRequestError,
  errorResponse,
  InvalidAuthenticationTokenError,
  InvalidCredentialsError,
  MethodNotAllowedError,
  NotFoundError,
  NotPermittedError,
  RateLimitedError,
  rateLimitHeaders,
} from '../platform/errors.ts';
import { addVary, failureOf, logFailure, withMethodFallbacks } from '../platform/http.ts';
import type { Jobs } from '../platform/jobs.ts';
import { NotProductOwnerError, ProductNotFoundError, RuleViolationError } from '../products/product.ts';
import { auditRoutes } from './audit.routes.ts';
import { ApiKeyNotFoundError, authRoutes } from './auth.routes.ts';
import { orderRoutes } from './orders.routes.ts';
import { productRoutes } from './products.routes.ts';

export const PRODUCTS_API_PREFIX = '/api/v1';

export type ApiErrorResponse = Readonly<{ code: number; message: string; headers?: Record<string, string> }>;

// biome-ignore lint/suspicious/noExplicitAny: constructors of any error class
type ErrorClass = abstract new (...args: any[]) => Error;

const TOKEN_MESSAGES = {
  format: 'authorization header format must be: Bearer {token}',
  invalid: 'auth: invalid token',
  expired: 'auth: token has expired',
  unlinked:
    'auth: an account with this email exists: sign in to it and link this identity with POST /v1/users/identities',
} as const;

const FORBIDDEN = 'you do not have permission to perform this action';

// The products API's one error table (the book's is platform/errors.ts).
export const API_ERRORS: ReadonlyArray<readonly [ErrorClass, (err: never) => ApiErrorResponse]> = [
  [BadRequestError, (err: BadRequestError) => ({ code: 400, message: err.message })],
  [RuleViolationError, (err: RuleViolationError) => ({ code: 422, message: err.message })],
  [EmailTakenError, () => ({ code: 422, message: 'validation: a user with this email already exists' })],
  [ProductNotFoundError, (err: ProductNotFoundError) => ({ code: 404, message: err.message })],
  [ApiKeyNotFoundError, (err: ApiKeyNotFoundError) => ({ code: 404, message: err.message })],
  [OrderNotFoundError, (err: OrderNotFoundError) => ({ code: 404, message: err.message })],
  [OrderConflictError, (err: OrderConflictError) => ({ code: 409, message: err.message })],
  [NotProductOwnerError, (err: NotProductOwnerError) => ({ code: 403, message: err.message })],
  [NotPermittedError, () => ({ code: 403, message: FORBIDDEN })],
  [AuthenticationRequiredError, () => ({ code: 401, message: 'authorization header is required' })],
  [
    InvalidAuthenticationTokenError,
    (err: InvalidAuthenticationTokenError) => ({
      code: 401,
      message: TOKEN_MESSAGES[err.reason],
      headers: { 'www-authenticate': 'Bearer' },
    }),
  ],
  [InvalidCredentialsError, () => ({ code: 401, message: 'auth: invalid email or password' })],
  [NotFoundError, () => ({ code: 404, message: '404 page not found' })],
  [
    MethodNotAllowedError,
    (err: MethodNotAllowedError) => ({
      code: 405,
      message: 'method not allowed',
      headers: { allow: err.allow },
    }),
  ],
  [
    RateLimitedError,
    (err: RateLimitedError) => ({
      code: 429,
      message: 'rate limit exceeded',
      headers: rateLimitHeaders(err),
    }),
  ],
];

const FRAMEWORK_ERRORS: Readonly<Record<string, ApiErrorResponse>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 413, message: 'request body too large' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 400, message: 'invalid request body' },
  // a body @fastify/compress cannot decode (platform/errors.ts)
  FST_CP_ERR_INVALID_CONTENT_ENCODING: { code: 400, message: 'invalid request body' },
  FST_CP_ERR_INVALID_CONTENT: { code: 400, message: 'invalid request body' },
  FST_ERR_VALIDATION: { code: 400, message: 'invalid request' },
  // A path that cannot be decoded, or whose id is longer than any id, names nothing here.
  FST_ERR_BAD_URL: { code: 404, message: '404 page not found' },
  FST_ERR_MAX_PARAM_LENGTH: { code: 404, message: '404 page not found' },
};

const SERVER_ERROR: ApiErrorResponse = { code: 500, message: 'internal server error' };

export function apiErrorResponse(err: unknown): ApiErrorResponse {
  for (const [errorClass, toResponse] of API_ERRORS) {
    if (err instanceof errorClass) return (toResponse as (e: Error) => ApiErrorResponse)(err);
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && code in FRAMEWORK_ERRORS) return FRAMEWORK_ERRORS[code] as ApiErrorResponse;
  // Any other client error the framework raises, and an unreachable database (503 with
  // Retry-After), keep the status the book's table gives them.
  const book = errorResponse(err);
  if (book.status < 500 || book.status === 503) {
    return {
      code: book.status,
      message: typeof book.error === 'string' ? book.error : 'invalid request',
      ...(book.status === 503 && book.headers ? { headers: { ...book.headers } } : {}),
    };
  }
  return SERVER_ERROR;
}

// Paths of this API: errors met before routing (a bad %-escape, an overlong id) get its
// envelope too.
export function isApiPath(url: string): boolean {
  return url === PRODUCTS_API_PREFIX || url.startsWith(`${PRODUCTS_API_PREFIX}/`);
}

// `streams` registers the change streams of products and orders (src/realtime), which this module knows
// nothing of; `jobs` takes the orders' workflow steps, and the orders' metrics go to `registry`.
export function productsApi(deps: {
  db: Db;
  jwts: Jwts;
  jobs: Jobs;
  registry: Registry;
  streams: (api: FastifyInstance) => void;
}) {
  return withMethodFallbacks(async (api: FastifyInstance): Promise<void> => {
    api.setErrorHandler((err, request, reply) => {
      const response = apiErrorResponse(failureOf(err, request));
      logFailure(err, request, response.code);
      reply
        .code(response.code)
        .headers(response.headers ?? {})
        .send({ code: response.code, message: response.message });
    });
    // API keys may come in their own header: responses here depend on it too.
    api.addHook('onRequest', async (_request, reply) => {
      addVary(reply, 'X-API-Key');
    });
    api.setNotFoundHandler(async () => {
      throw new NotFoundError();
    });
    authRoutes(api, deps);
    productRoutes(api, deps.db);
    orderRoutes(api, { db: deps.db, jobs: deps.jobs, metrics: orderMetrics(deps.registry) });
    auditRoutes(api, deps.db);
    deps.streams(api);
  });
}
