// HTTP helpers shared by every module: id parameters, and the book's router behaviour for
// known paths (405 with Allow for other methods, 200 with Allow for OPTIONS), request ids.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods, RouteOptions } from 'fastify';
import {
  BodyAbortedError,
  type ErrorResponse,
  errorResponse,
  isStatementTimeout,
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

// A client's X-Request-Id is kept when it looks like an id; anything else is replaced. Fastify's
// genReqId for the API and the callback listener alike.
const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestId(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && SANE_REQUEST_ID.test(given) ? given : randomUUID();
}

// Adds to Vary rather than replacing it: CORS and compression set theirs on the same reply.
export function addVary(reply: FastifyReply, value: string): void {
  const current = reply.getHeader('vary');
  reply.header('vary', current ? `${current}, ${value}` : value);
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

// The book's readIDParam: a positive int64, anything else is "not found" (IdParams reads a
// path's id with it, GraphQL an argument).
export function parseId(raw: string): string {
  if (!/^\+?\d{1,19}$/.test(raw)) throw new NotFoundError();
  const id = BigInt(raw);
  if (id < 1n || id > INT64_MAX) throw new NotFoundError();
  return id.toString();
}

const ALL_METHODS: readonly HTTPMethods[] = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];

// Each route belongs to the innermost group it was registered in: that group's scope (its
// hooks, error handler and envelope) answers the path's other methods.
const groupOfRoute = new WeakMap<object, symbol>();
// The fallbacks' own handlers, which no group counts as routes of its own.
const fallbackHandlers = new WeakSet<object>();

type Plugin<Options> = (scope: FastifyInstance, options: Options) => void | Promise<void>;

// A route group: every path the plugin (and the plugins it registers) gives a route answers
// the remaining methods, 405 with Allow, and OPTIONS with 200 and Allow. The paths are those
// actually registered, seen by an onRoute hook, so no list of them is kept by hand.
export function withMethodFallbacks<Options>(plugin: Plugin<Options>): Plugin<Options> {
  return async (scope, options) => {
    const group = Symbol('route group');
    const routes: RouteOptions[] = [];
    scope.addHook('onRoute', (route) => {
      if (fallbackHandlers.has(route.handler)) return;
      groupOfRoute.set(route, group);
      routes.push(route);
    });
    await plugin(scope, options);
    // Registered last, this loads after every route of the group, nested plugins' too.
    scope.register(async (fallbacks) => {
      const methods = new Map<string, Set<HTTPMethods>>();
      for (const route of routes) {
        if (groupOfRoute.get(route) !== group) continue;
        const known = methods.get(route.url) ?? new Set();
        for (const method of [route.method].flat()) known.add(method as HTTPMethods);
        methods.set(route.url, known);
      }
      for (const [url, registered] of methods) {
        addMethodFallback(fallbacks, url.slice(fallbacks.prefix.length), registered);
      }
    });
  };
}

function addMethodFallback(scope: FastifyInstance, path: string, registered: ReadonlySet<HTTPMethods>): void {
  const allow = [...new Set([...registered, 'OPTIONS'])].sort().join(', ');
  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    if (request.method === 'OPTIONS') {
      reply.header('allow', allow).code(200).send();
      return reply;
    }
    throw new MethodNotAllowedError(request.method, allow);
  };
  fallbackHandlers.add(handler);
  scope.route({
    method: ALL_METHODS.filter((m) => !registered.has(m)),
    url: path,
    // Not operations of their own: the document says once that other methods get 405.
    schema: { hide: true },
    handler,
  });
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
  // a statement timeout is one slow request, not an outage: logged as a failure of its own
  else if (status === 503 && !isStatementTimeout(err)) databaseOutage.refused(request.log, err);
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
