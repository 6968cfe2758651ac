// HTTP helpers shared by every module: id parameters, and the book's router behaviour for
// known paths (405 with Allow for other methods, 200 with Allow for OPTIONS).
import type { FastifyInstance, FastifyReply, FastifyRequest, HTTPMethods } from 'fastify';
import { type ErrorResponse, errorResponse, MethodNotAllowedError, NotFoundError } from './errors.ts';

const MAX_ID = 9223372036854775807n;

// The book's readIDParam: a positive int64, anything else is "not found". Returned as a
// string so ids beyond 2^53 reach PostgreSQL intact.
export function readIdParam(request: FastifyRequest): string {
  return parseId((request.params as { id?: string }).id ?? '');
}

// The same rule for an id that arrives some other way (a GraphQL argument).
export function parseId(raw: string): string {
  if (!/^\+?\d{1,19}$/.test(raw)) throw new NotFoundError();
  const id = BigInt(raw);
  if (id < 1n || id > MAX_ID) throw new NotFoundError();
  return id.toString();
}

const ALL_METHODS: readonly HTTPMethods[] = ['DELETE', 'GET', 'HEAD', 'PATCH', 'POST', 'PUT', 'OPTIONS'];

// Call once all routes exist: every known path answers the remaining methods.
export function addMethodFallbacks(app: FastifyInstance, paths: readonly string[]): void {
  for (const path of paths) {
    const registered = ALL_METHODS.filter((m) => app.hasRoute({ method: m, url: path }));
    if (registered.length === 0) throw new Error(`no routes on ${path}`);
    const allow = [...new Set([...registered, 'OPTIONS'])].sort().join(', ');
    const missing = ALL_METHODS.filter((m) => !registered.includes(m));
    app.route({
      method: missing,
      url: path,
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

// An error handler: the error table decides the status and headers, server errors are
// logged, and `envelope` shapes the body (the book's {"error": ...}, or GraphQL's errors).
export function errorHandler(envelope: (response: ErrorResponse) => unknown) {
  return (err: unknown, request: FastifyRequest, reply: FastifyReply): void => {
    const response = errorResponse(err);
    if (response.status >= 500) {
      request.log.error({ err, method: request.method, path: request.url }, 'request failed');
    }
    reply
      .code(response.status)
      .headers(response.headers ?? {})
      .send(envelope(response));
  };
}
