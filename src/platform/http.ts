// HTTP helpers shared by every module: id parameters, and the book's router behaviour for
// known paths (405 with Allow for other methods, 200 with Allow for OPTIONS).
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import {
  BodyAbortedError,
  type ErrorResponse,
  errorResponse,
  MethodNotAllowedError,
  NotFoundError,
} from './errors.ts';
import { databaseOutage } from './outage.ts';
import { INT64_MAX } from './request.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    // false: not counted by the rate limiter (static assets of the docs page)
    rateLimit?: boolean;
    // A health probe (liveness, readiness, the book's healthcheck): it must answer for itself
    // while the database is down, so a credential sent along that cannot be checked then is
    // ignored rather than failing it.
    probe?: boolean;
    // A route being retired: since when, and when it goes.
    deprecation?: Readonly<{ since: Date; sunset: Date; link?: string }>;
  }
}

// Routes whose config has a `deprecation` are marked deprecated in the document and answer
// with Deprecation (RFC 9745) and Sunset (RFC 8594) headers.
export function deprecationHeaders(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    const deprecation = route.config?.deprecation;
    if (!deprecation) return;
    route.schema = { ...route.schema, deprecated: true } as typeof route.schema;
    const headers: Record<string, string> = {
      deprecation: `@${Math.floor(deprecation.since.getTime() / 1000)}`,
      sunset: deprecation.sunset.toUTCString(),
    };
    if (deprecation.link) headers.link = `<${deprecation.link}>; rel="deprecation"`;
    const existing = route.onSend === undefined ? [] : [route.onSend].flat();
    route.onSend = [
      ...existing,
      async (_request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
        reply.headers(headers);
        return payload;
      },
    ];
  });
}

// The book's readIDParam: a positive int64, anything else is "not found". Returned as a
// string so ids beyond 2^53 reach PostgreSQL intact.
export function readIdParam(request: FastifyRequest): string {
  return parseId((request.params as { id?: string }).id ?? '');
}

// The same rule for an id that arrives some other way (a GraphQL argument).
export function parseId(raw: string): string {
  if (!/^\+?\d{1,19}$/.test(raw)) throw new NotFoundError();
  const id = BigInt(raw);
  if (id < 1n || id > INT64_MAX) throw new NotFoundError();
  return id.toString();
}

const ALL_METHODS: readonly HTTPMethods[] = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];

// Call once all routes exist: every known path answers the remaining methods. Inside a
// plugin registered with a prefix, pass that prefix (hasRoute wants the full path).
export function addMethodFallbacks(app: FastifyInstance, paths: readonly string[], prefix = ''): void {
  for (const path of paths) {
    const registered = ALL_METHODS.filter((m) => app.hasRoute({ method: m, url: prefix + path }));
    if (registered.length === 0) throw new Error(`no routes on ${path}`);
    const allow = [...new Set([...registered, 'OPTIONS'])].sort().join(', ');
    const missing = ALL_METHODS.filter((m) => !registered.includes(m));
    app.route({
      method: missing,
      url: path,
      // Not operations of their own: the document says once that other methods get 405.
      schema: { hide: true },
      handler: async (request: FastifyRequest, reply: FastifyReply) => {
        if (request.method === 'OPTIONS') {
          reply.header('allow', allow).code(200).send();
          return reply;
        }
        throw new MethodNotAllowedError(request.method, allow);
      },
    });
  }
}

// What failed, as the error tables see it: a client that hung up mid-body broke the stream
// the route read, whatever the route then threw.
export function failureOf(err: unknown, request: FastifyRequest): unknown {
  return request.raw.readableAborted ? new BodyAbortedError() : err;
}

// The one log decision for a failed request, whichever API and envelope answer it: a client's
// abort at info, a database outage through its outage log (not a line per request), any other
// server fault at error with its stack. A 503 is always an outage of the database (an
// UnavailableError says so in the routes that catch it themselves).
export function logFailure(err: unknown, request: FastifyRequest, status: number): void {
  const where = { method: request.method, path: request.url };
  if (request.raw.readableAborted) request.log.info({ err, ...where }, 'client aborted its body');
  else if (status === 503) databaseOutage.refused(request.log, err);
  else if (status >= 500) request.log.error({ err, ...where }, 'request failed');
}

// The one way an error becomes a response: the table's status and headers, logFailure's log
// line, and `envelope` shaping the body (the book's {"error": ...} by default, GraphQL's
// errors for /graphql). Returns the status sent.
export function sendError(
  err: unknown,
  request: FastifyRequest,
  reply: FastifyReply,
  envelope: (response: ErrorResponse) => unknown = (response) => ({ error: response.error }),
): number {
  const response = errorResponse(failureOf(err, request));
  logFailure(err, request, response.status);
  reply
    .code(response.status)
    .headers(response.headers ?? {})
    .send(envelope(response));
  return response.status;
}

// sendError as a Fastify error handler.
export function errorHandler(envelope: (response: ErrorResponse) => unknown) {
  return (err: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    sendError(err, request, reply, envelope);
  };
}
