// CORS as the book does it: trusted origins are echoed (never `*`, never credentials), also on
// error responses; a preflight from a trusted origin is answered here, before rate limiting
// and authentication.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

// The origins are read on every request, so a runtime setting changes them live.
export function corsHook(cors: Readonly<{ trustedOrigins: readonly string[] }>) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    reply.header('vary', 'Origin, Access-Control-Request-Method');
    const origin = request.headers.origin;
    if (origin === undefined || !cors.trustedOrigins.includes(origin)) return undefined;
    reply.header('access-control-allow-origin', origin);
    if (request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined) {
      reply
        .header('access-control-allow-methods', 'OPTIONS, PUT, PATCH, DELETE')
        .header('access-control-allow-headers', 'Authorization, Content-Type')
        .code(200)
        .send();
      return reply;
    }
    return undefined;
  };
}

// Registered after the request count and before authentication, so that a preflight is
// answered before either authenticates or limits it.
export const corsPlugin = fp(
  async (app: FastifyInstance, { cors }: { cors: Readonly<{ trustedOrigins: readonly string[] }> }) => {
    app.addHook('onRequest', corsHook(cors));
  },
  { name: 'cors' },
);
