// What every request passes first and last, whatever its route: counted and given its id, a
// missing Host refused, a refused body's connection kept open, and one log line and one
// metric when answered, and the book's error envelope. Registered first, so its onRequest hook
// runs before all others.
import { finished } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { BadRequestError, NotFoundError } from './errors.ts';
import { sendError } from './http.ts';
import { MAX_BODY_BYTES } from './json-body.ts';
import type { Metrics } from './metrics.ts';

// The most of a refused body that is discarded to keep its connection: 8 JSON bodies' worth.
const DISCARD_LIMIT = 8 * MAX_BODY_BYTES;

// Hooks that usually have nothing to wait for take Fastify's callback, not a promise: every
// request, a healthcheck too, passes through each of them.
export const requestsPlugin = fp(
  async (app: FastifyInstance, { metrics }: { metrics: Metrics }) => {
    app.addHook('onRequest', (request, reply, done) => {
      metrics.requestReceived();
      reply.header('x-request-id', request.id);
      // Go's handlers never look at Content-Type; Fastify would refuse a malformed one before
      // the body is read, so it is dropped here and every body reaches the decoder.
      delete request.raw.headers['content-type'];
      // HTTP/1.1 requires Host (Go answers 400 too); Node's own refusal has an empty body.
      if (request.raw.headers.host === undefined && request.raw.httpVersion === '1.1') {
        done(new BadRequestError('missing required Host header'));
        return;
      }
      done();
    });
    // An answer before the whole body has arrived (Fastify refusing it, too large or unreadable,
    // with `Connection: close`; a 404; a refused credential): closing the connection then
    // resets it under a client still sending, which gets EPIPE instead of the answer. A declared
    // rest up to DISCARD_LIMIT is read and discarded instead, within -read-timeout: after the
    // answer, on a connection that stays open (http-server.ts); before it when the client asked
    // to close (`Connection: close`, HTTP/1.0), since Node closes once the answer is written.
    app.addHook('onSend', (request, reply, payload, done) => {
      const raw = request.raw;
      if (raw.complete || !(Number(request.headers['content-length']) <= DISCARD_LIMIT)) {
        done(null, payload);
        return;
      }
      if (reply.getHeader('connection') === 'close') reply.removeHeader('connection');
      if (reply.raw.shouldKeepAlive) {
        done(null, payload);
        return;
      }
      finished(raw, { writable: false }, () => done(null, payload));
      raw.resume();
    });
    app.addHook('onResponse', (request, reply, done) => {
      metrics.responseSent(
        request.method,
        request.routeOptions.url ?? 'unmatched',
        reply.statusCode,
        reply.elapsedTime / 1000,
      );
      request.log.info(
        {
          method: request.method,
          path: request.url,
          status: reply.statusCode,
          duration_ms: Math.round(reply.elapsedTime * 1000) / 1000,
          remote_ip: request.ip,
        },
        'request',
      );
      done();
    });
    // The book's {"error": ...}, unless a scope (the products API, GraphQL) answers its own way.
    app.setErrorHandler((err, request, reply) => {
      sendError(err, request, reply);
    });
    app.setNotFoundHandler(async () => {
      throw new NotFoundError();
    });
  },
  { name: 'requests' },
);
