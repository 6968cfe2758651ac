// Change streams: GET /v1/movies/events, GET /api/v1/products/events and
// GET /api/v1/orders/events (Server-Sent Events)
// and GET /v1/ws (WebSocket, every topic). Each reads from the process's one EventFeed of its
// topic; a client costs a subscriber in memory, never a database connection. A client that
// leaves more than -stream-max-buffered bytes unread is disconnected, so a slow reader cannot
// grow the server's memory.
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import type { WebSocket } from 'ws';
import { requireAuthenticated } from '../accounts/guards.ts';
import type { Identity } from '../accounts/user.ts';
import { apiErrors } from '../api-v1/responses.ts';
import { requestCredential } from '../auth/registry.ts';
import { BadRequestError, ValidationError } from '../platform/errors.ts';
import {
  BEARER_OPTIONAL,
  BEARER_REQUIRED,
  ErrorEnvelope,
  emptyResponse,
  errors,
  response,
} from '../platform/schemas.ts';
import { resumePoint } from './events.ts';
import {
  type EndReason,
  feedOf,
  follow,
  ownerOf,
  type RealtimeDeps,
  recordStream,
  startOf,
  type Viewer,
  viewing,
} from './stream.ts';
import { MOVIES, ORDERS, PRODUCTS, type Topic } from './topics.ts';
import { serveWebSocket, TOPIC_LIST } from './websocket-session.ts';

const TAGS = ['streams'];
// How long an SSE client waits before reconnecting to a stream that ended at shutdown: time
// for a restarted server, or the load balancer's next instance, to take it. `retry:` sets it
// for EventSource; the final event says why the stream ended, and carries no id, so the
// client resumes from the last change it received.
const SHUTDOWN_RETRY_MS = 2_000;
const SHUTDOWN_EVENT = `event: shutdown\ndata: {"reason":"server shutting down"}\nretry: ${SHUTDOWN_RETRY_MS}\n\n`;

const EventStream = (topic: Topic, shown: string, example: string) =>
  ({
    content: {
      'text/event-stream': {
        schema: Type.String({
          description: `Server-Sent Events. Each change: \`id: <outbox id>\`, \`event: <${topic.eventTypes.join('|')}>\`, \`data: {"id", "type", "occurred_at", "${topic.subject}"}\` where ${shown}. Before resumed events: \`event: gap\` with data {"last_event_id", "pruned_up_to"} when events after the requested id were pruned. \`: heartbeat\` comments keep idle streams open; \`event: revoked\` with data {"reason"} ends a stream whose credential or permission was withdrawn; \`event: shutdown\` with data {"reason"} and \`retry: ${SHUTDOWN_RETRY_MS}\` ends every stream when the server shuts down (reconnect with Last-Event-ID).`,
          examples: [example],
        }),
      },
    },
  }) as unknown as TSchema;

const EventsQuery = Type.Object({
  last_event_id: Type.Optional(
    Type.Integer({
      minimum: 0,
      description:
        'resume after this event id on a first connect (EventSource sends Last-Event-ID on reconnects)',
    }),
  ),
});

const LastEventIdHeader = Type.Object({
  'last-event-id': Type.Optional(
    Type.String({
      description: 'resume after this event id: exactly the events committed since are sent first',
    }),
  ),
});

const UpgradeRequired = response(
  ErrorEnvelope,
  'Not a WebSocket upgrade request: connect with a WebSocket client',
  { Upgrade: { type: 'string', description: 'websocket', required: true } },
);

// `invalid` is the route's error for a malformed id (each API has its own envelope).
function readLastEventId(request: FastifyRequest, invalid: () => Error): number | undefined {
  const header = request.headers['last-event-id'];
  const query = (request.query as Record<string, unknown>).last_event_id;
  const given = typeof header === 'string' && header !== '' ? header : query;
  if (given === undefined) return undefined;
  if (typeof given !== 'string' || !/^\d{1,16}$/.test(given) || !Number.isSafeInteger(Number(given)))
    throw invalid();
  return Number(given);
}

// The request hook of a topic's SSE route: the refusals are those of the topic's own API.
const authorize = (topic: Topic) => async (request: FastifyRequest) => {
  const refused = topic.refusal(request.identity);
  if (refused) throw refused;
};

// The handler of a topic's SSE route, after authorize(topic).
function eventStream(deps: RealtimeDeps, topic: Topic, invalid: () => Error) {
  const { config, metrics, owners, closers } = deps;
  const feed = feedOf(deps, topic);
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const afterId = readLastEventId(request, invalid);
    const resume = afterId === undefined ? undefined : await resumePoint(deps.db, feed.topic, afterId);
    const gap = resume?.gap;
    const owner = ownerOf(request);
    const viewer: Viewer = { identity: request.identity as Identity };
    // Before the 200: a database that cannot start the feed is still a 500 in the envelope, and
    // whatever commits once the client has its 200 reaches it.
    await feed.start();
    const start = await startOf(deps.db, feed.topic, resume?.after);
    const res = reply.raw;
    let ended = false;
    let heartbeat: NodeJS.Timeout | undefined;
    let stopFollowing = () => {};
    let removeOwner = () => {};
    const record = recordStream('sse', request, {
      metrics,
      closers,
      shutdown: () => end('shutdown', SHUTDOWN_EVENT),
    });
    const end = (reason: EndReason, last?: string) => {
      if (!record.finish(reason, res.writableLength)) return;
      ended = true;
      clearInterval(heartbeat);
      stopFollowing();
      removeOwner();
      if (reason === 'slow_consumer') res.destroy();
      else if (!res.writableEnded) res.end(last);
    };
    const write = (chunk: string) => {
      if (ended) return;
      res.write(chunk);
      if (res.writableLength > config.maxBufferedBytes) end('slow_consumer');
    };

    reply.hijack();
    res.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      // nginx and others buffer responses unless told otherwise
      'x-accel-buffering': 'no',
    });
    res.on('close', () => end('closed'));
    write(`: stream of ${feed.topic.subject} events\n\n`);
    removeOwner = owners.add({
      ...owner,
      refusal: viewing(viewer, () => [feed.topic]),
      end: (reason) => end('revoked', `event: revoked\ndata: ${JSON.stringify({ reason })}\n\n`),
    });
    if (gap) write(`event: gap\ndata: ${JSON.stringify(gap)}\n\n`);
    heartbeat = setInterval(() => write(': heartbeat\n\n'), config.heartbeatMs);
    try {
      const unsubscribe = await follow(deps, feed, start, {
        viewer,
        send: (event) => {
          record.countSent();
          write(event.sse);
        },
        isOpen: () => !ended,
        unread: () => res.writableLength,
      });
      if (ended) unsubscribe();
      else stopFollowing = unsubscribe;
    } catch (err) {
      request.log.error({ err }, 'event stream could not catch up');
      end('error');
    }
  };
}

// A topic's SSE route: `errors` are its API's error responses, `invalid` its error for a
// malformed Last-Event-ID.
function eventStreamRoute(
  app: FastifyInstance,
  deps: RealtimeDeps,
  route: Readonly<{
    url: string;
    topic: Topic;
    operationId: string;
    // who may read, for the summary
    needs: string;
    // what the event's record is, for the description
    shown: string;
    example: string;
    errors: Record<number, TSchema>;
    invalid: () => Error;
  }>,
): void {
  const subject = route.topic.subject;
  app.get(
    route.url,
    {
      onRequest: authorize(route.topic),
      schema: {
        operationId: route.operationId,
        summary: `${subject[0]?.toUpperCase()}${subject.slice(1)} changes as Server-Sent Events, in commit order, resumable with Last-Event-ID (${route.needs})`,
        tags: TAGS,
        security: BEARER_REQUIRED,
        headers: LastEventIdHeader,
        querystring: EventsQuery,
        response: {
          200: response(
            EventStream(route.topic, route.shown, route.example),
            'The event stream; it stays open until the client leaves',
          ),
          ...route.errors,
        },
      },
    },
    eventStream(deps, route.topic, route.invalid),
  );
}

// GET /products/events and GET /orders/events, registered inside the products API (its
// prefix, error envelope and 429 on every route).
export function apiEventStreamRoutes(api: FastifyInstance, deps: RealtimeDeps): void {
  eventStreamRoute(api, deps, {
    url: '/products/events',
    topic: PRODUCTS,
    operationId: 'streamProductEvents',
    needs: 'products:read',
    shown: 'product is as GET /api/v1/products/:id shows it, or {"id"} for product.deleted',
    example:
      'id: 9\nevent: product.updated\ndata: {"id":9,"type":"product.updated","occurred_at":"2026-11-29T05:00:00.000Z","product":{"id":3,"user_id":1,"name":"Laptop","description":"14 inch","price":1199.99,"stock":10,"created_at":"2026-11-29T04:00:00.000Z","updated_at":"2026-11-29T05:00:00.000Z"}}\n\n',
    errors: apiErrors(400, 401, 403, 500),
    invalid: () => new BadRequestError('invalid last event id: must be a non-negative integer'),
  });
  eventStreamRoute(api, deps, {
    url: '/orders/events',
    topic: ORDERS,
    operationId: 'streamOrderEvents',
    needs: "orders:read; only the reader's own orders, every order for an admin",
    shown:
      'order is as GET /api/v1/orders/{id} shows it; a reader receives only the events of orders it may read',
    example:
      'id: 12\nevent: order.updated\ndata: {"id":12,"type":"order.updated","occurred_at":"2026-12-07T02:00:01.000Z","order":{"id":5,"user_id":1,"status":"reserved","items":[{"product_id":3,"quantity":2,"unit_price":149.99}],"total":299.98,"failure_reason":null,"created_at":"2026-12-07T02:00:00.000Z","updated_at":"2026-12-07T02:00:01.000Z","version":2}}\n\n',
    errors: apiErrors(400, 401, 403, 500),
    invalid: () => new BadRequestError('invalid last event id: must be a non-negative integer'),
  });
}

export async function realtimeRoutes(app: FastifyInstance, deps: RealtimeDeps): Promise<void> {
  eventStreamRoute(app, deps, {
    url: '/v1/movies/events',
    topic: MOVIES,
    operationId: 'streamMovieEvents',
    needs: 'movies:read',
    shown:
      'movie is as GET /v1/movies/:id shows it (version included), or {"id", "version"} for movie.deleted',
    example:
      'id: 42\nevent: movie.updated\ndata: {"id":42,"type":"movie.updated","occurred_at":"2026-11-29T05:00:00.000Z","movie":{"id":7,"title":"Arrival","year":2017,"runtime":"116 mins","genres":["drama"],"version":2}}\n\n',
    errors: errors(403, 422, 500),
    invalid: () => new ValidationError({ last_event_id: 'must be a non-negative integer' }),
  });

  // The 101 is written by the WebSocket server, not the reply: it gets the request id here.
  const upgradeIds = new WeakMap<IncomingMessage, string>();
  app.websocketServer.on('headers', (headers: string[], raw: IncomingMessage) => {
    const id = upgradeIds.get(raw);
    if (id) headers.push(`X-Request-Id: ${id}`);
  });

  app.route({
    method: 'GET',
    url: '/v1/ws',
    onRequest: [
      async (request) => {
        // An upgrade without a credential authenticates with its first message. Permissions
        // are the topics': each subscribe checks its own.
        if (request.ws && !requestCredential(request)) return;
        await requireAuthenticated(request);
      },
      async (request) => {
        if (request.ws) upgradeIds.set(request.raw, request.id);
      },
    ],
    schema: {
      operationId: 'connectWebSocket',
      summary: `WebSocket of change streams (${TOPIC_LIST}): send {"type":"subscribe","topic":"movies"} to receive the events GET /v1/movies/events sends, "products" for those of GET /api/v1/products/events`,
      description: `Authentication: a credential on the upgrade request (refused with 401 like any request), or, from browsers, which cannot send headers with it, no credential and a first message {"type":"auth","token":"…"} within -ws-ping, answered {"type":"authenticated"} or closed with 4401 (missing or invalid token). Permissions are checked per topic when subscribing: "movies" needs an activated account with movies:read, "products" what GET /api/v1/products needs (an API key needs the products:read scope); a subscribe without them gets {"type":"error","topic","message"} and the socket stays open. Client messages: {"type":"subscribe","topic","last_event_id"?: N} and {"type":"unsubscribe","topic"} with topic one of ${TOPIC_LIST}, answered with {"type":"subscribed"|"unsubscribed","topic"}; a socket may subscribe to several topics; anything else gets {"type":"error","message"}. Events: {"topic","id","type","occurred_at","movie"|"product"}, ids counting per topic, and {"type":"gap","topic","last_event_id","pruned_up_to"} before a resume past pruned events. The server pings every -ws-ping and drops a client that did not answer the previous ping. Close codes: 1008 when the credential, or the permission of a subscribed topic, is withdrawn, 1013 when the client left more than -stream-max-buffered bytes unread, 1001 at shutdown.`,
      tags: TAGS,
      security: BEARER_OPTIONAL,
      response: {
        101: emptyResponse('Switching Protocols: the WebSocket is open'),
        426: UpgradeRequired,
        ...errors(500),
      },
    },
    handler: async (_request, reply: FastifyReply) => {
      reply.code(426).header('upgrade', 'websocket');
      return { error: 'this endpoint needs a WebSocket upgrade' };
    },
    wsHandler: (socket: WebSocket, request: FastifyRequest) => serveWebSocket(socket, request, deps),
  });
}
