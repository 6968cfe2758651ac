// Change streams: GET /v1/movies/events and GET /api/v1/products/events (Server-Sent Events)
// and GET /v1/ws (WebSocket, every topic). Each reads from the process's one EventFeed of its
// topic; a client costs a subscriber in memory, never a database connection. A client that
// leaves more than -stream-max-buffered bytes unread is disconnected, so a slow reader cannot
// grow the server's memory.
import type { IncomingMessage } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type TSchema, Type } from 'typebox';
import type { RawData, WebSocket } from 'ws';
import { requireAuthenticated } from '../accounts/auth.ts';
import type { Identity } from '../accounts/user.ts';
import type { Credential } from '../auth/authenticator.ts';
import { requestCredential } from '../auth/registry.ts';
import type { EventsConfig } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { BadRequestError, InvalidAuthenticationTokenError, ValidationError } from '../platform/errors.ts';
import type { Metrics } from '../platform/metrics.ts';
import {
  BEARER_OPTIONAL,
  BEARER_REQUIRED,
  ErrorEnvelope,
  emptyResponse,
  errors,
  response,
} from '../platform/schemas.ts';
import { apiErrors } from '../products/responses.ts';
import { endedNow, eventsAfter, isAfter, type Position, resumePoint, type StreamEvent } from './events.ts';
import type { EventFeed } from './feed.ts';
import type { Owner, Reauthenticate, StreamOwners } from './owners.ts';
import { MOVIES, PRODUCTS, TOPICS, type Topic } from './topics.ts';

export type RealtimeDeps = Readonly<{
  db: Db;
  // one per topic, by topic name
  feeds: ReadonlyMap<string, EventFeed>;
  owners: StreamOwners;
  config: EventsConfig;
  metrics: Metrics;
  // The identity behind a credential, as a request's would be found (src/auth/registry.ts).
  reauthenticate: Reauthenticate;
  // Ends every open stream; the app calls each at shutdown, before the WebSocket server closes.
  closers: Set<() => void>;
}>;

const TAGS = ['streams'];
const TOPIC_LIST = TOPICS.map((topic) => `"${topic.name}"`).join(', ');
const CATCH_UP_BATCH = 500;
const PACE_MS = 10;
// How long an SSE client waits before reconnecting to a stream that ended at shutdown: time
// for a restarted server, or the load balancer's next instance, to take it. `retry:` sets it
// for EventSource; the final event says why the stream ended, and carries no id, so the
// client resumes from the last change it received.
const SHUTDOWN_RETRY_MS = 2_000;
const SHUTDOWN_EVENT = `event: shutdown\ndata: {"reason":"server shutting down"}\nretry: ${SHUTDOWN_RETRY_MS}\n\n`;

type EndReason = 'closed' | 'slow_consumer' | 'revoked' | 'unresponsive' | 'shutdown' | 'error';

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

// A stream's client as follow() sees it.
type Follower = Readonly<{
  send: (event: StreamEvent) => void;
  isOpen: () => boolean;
  // bytes written to the client and not yet taken by it
  unread: () => number;
}>;

// Sends every event after the position `after` (or, without one, every event from now on)
// exactly once and in the delivery order: the feed's live events are held while the outbox is
// read up to them. Catching up waits while the client has more than half its bound unread, so
// a resume from far back is paced by the client instead of cutting it off as a slow consumer.
async function follow(
  { db, config }: RealtimeDeps,
  feed: EventFeed,
  after: Position | undefined,
  { send, isOpen, unread }: Follower,
): Promise<() => void> {
  let cursor: Position | undefined = after;
  let held: StreamEvent[] | null = after === undefined ? null : [];
  const past = after === undefined ? await endedNow(db) : undefined;
  const deliver = (event: StreamEvent) => {
    if (cursor && !isAfter(event.position, cursor)) return;
    if (past?.has(event.position)) return;
    cursor = event.position;
    send(event);
  };
  const paced = async (event: StreamEvent) => {
    while (isOpen() && unread() > config.maxBufferedBytes / 2) await sleep(PACE_MS);
    if (isOpen()) deliver(event);
  };
  const unsubscribe = await feed.subscribe((events) => {
    // A backlog from before this follower came is passed over a batch at a time.
    if (past && (events.at(-1)?.position.xid ?? 0n) < past.xmin) return;
    if (held) held.push(...events);
    else for (const event of events) if (isOpen()) deliver(event);
  });
  if (after === undefined) {
    if (!cursor || isAfter(feed.last, cursor)) cursor = feed.last;
    return unsubscribe;
  }
  try {
    for (;;) {
      const { events } = await eventsAfter(db, feed.topic, cursor as Position, CATCH_UP_BATCH);
      for (const event of events) await paced(event);
      if (events.length < CATCH_UP_BATCH || !isOpen()) break;
    }
    const live = held as StreamEvent[];
    for (let event = live.shift(); event; event = live.shift()) await paced(event);
    held = null;
  } catch (err) {
    unsubscribe();
    throw err;
  }
  return unsubscribe;
}

// What every stream keeps the same way: the open and ended metrics, its place among the streams
// shutdown ends, and one log line when it ends (its reply is hijacked: no request log).
function recordStream(
  transport: 'sse' | 'websocket',
  request: FastifyRequest,
  { metrics, closers, shutdown }: { metrics: Metrics; closers: Set<() => void>; shutdown: () => void },
) {
  const started = performance.now();
  let sent = 0;
  let finished = false;
  metrics.streamsOpen.inc({ transport });
  closers.add(shutdown);
  return {
    countSent: () => {
      sent++;
    },
    // false when it had already ended
    finish: (reason: EndReason, bufferedBytes: number): boolean => {
      if (finished) return false;
      finished = true;
      closers.delete(shutdown);
      metrics.streamsOpen.dec({ transport });
      metrics.streamsEnded.inc({ transport, reason });
      request.log.info(
        {
          transport,
          path: request.url,
          duration_ms: Math.round(performance.now() - started),
          events_sent: sent,
          buffered_bytes: bufferedBytes,
          reason,
        },
        'stream ended',
      );
      return true;
    },
  };
}

function ownerOf(request: FastifyRequest) {
  const identity = request.identity as Identity;
  const credential = requestCredential(request);
  if (!credential) throw new Error('a stream without a credential passed authentication');
  return { credential, userId: identity.id };
}

function feedOf(deps: RealtimeDeps, topic: Topic): EventFeed {
  const feed = deps.feeds.get(topic.name);
  if (!feed) throw new Error(`no event feed for the topic ${topic.name}`);
  return feed;
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
    // Before the 200: a database that cannot start the feed is still a 500 in the envelope.
    await feed.start();
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
      refusal: feed.topic.refusal,
      end: (reason) => end('revoked', `event: revoked\ndata: ${JSON.stringify({ reason })}\n\n`),
    });
    if (gap) write(`event: gap\ndata: ${JSON.stringify(gap)}\n\n`);
    heartbeat = setInterval(() => write(': heartbeat\n\n'), config.heartbeatMs);
    try {
      const unsubscribe = await follow(deps, feed, resume?.after, {
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

// GET /products/events, registered inside the products API (its prefix, error envelope and
// 429 on every route).
export function productEventsRoutes(api: FastifyInstance, deps: RealtimeDeps): void {
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
}

export function realtimeRoutes(app: FastifyInstance, deps: RealtimeDeps): void {
  const { config, metrics, owners, closers } = deps;

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
    wsHandler: (socket: WebSocket, request: FastifyRequest) => {
      if (request.identity) serveSocket(socket, request, ownerOf(request));
      else void authenticateByMessage(socket, request);
    },
  });

  // A browser cannot send headers with its upgrade: without a credential there, the first
  // message must be {"type":"auth","token":"…"}, before the first ping is due.
  async function authenticateByMessage(socket: WebSocket, request: FastifyRequest): Promise<void> {
    // Every message is kept from the start: the ones after the first are handled once the
    // token is checked, in order.
    const received: [RawData, boolean][] = [];
    const keep = (message: RawData, binary: boolean) => received.push([message, binary]);
    socket.on('message', keep);
    const first = await new Promise<[RawData, boolean] | undefined>((resolve) => {
      const deadline = setTimeout(() => resolve(undefined), config.wsPingMs);
      const check = () => {
        if (received.length === 0) return;
        clearTimeout(deadline);
        socket.off('message', check);
        resolve(received.shift());
      };
      socket.on('message', check);
      socket.once('close', () => {
        clearTimeout(deadline);
        resolve(undefined);
      });
    });
    const message = first === undefined || first[1] ? undefined : parseMessage(first[0].toString());
    if (message?.type !== 'auth' || typeof message.token !== 'string' || message.token === '')
      return socket.close(4401, 'authentication required: send {"type":"auth","token":"…"} first');
    const credential: Credential = { from: 'authorization', value: message.token };
    let identity: Identity;
    try {
      identity = await deps.reauthenticate(credential);
    } catch (err) {
      if (err instanceof InvalidAuthenticationTokenError) return socket.close(4401, err.message);
      request.log.error({ err }, 'websocket authentication failed');
      return socket.close(1011, 'authentication failed');
    }
    if (socket.readyState !== socket.OPEN) return;
    socket.off('message', keep);
    socket.send(JSON.stringify({ type: 'authenticated' }));
    serveSocket(socket, request, { credential, userId: identity.id });
    for (const [data, binary] of received) socket.emit('message', data, binary);
  }

  function serveSocket(
    socket: WebSocket,
    request: FastifyRequest,
    owner: Omit<Owner, 'end' | 'refusal'>,
  ): void {
    let ended = false;
    let alive = true;
    // The current subscription of each topic: a stopped one stops sending even while it still
    // catches up.
    const following = new Map<Topic, { unsubscribe: Promise<() => void> }>();
    // The topics whose permission a subscribe has checked: those revocation re-checks.
    const permitted = new Set<Topic>();
    const stopFollowing = (topic: Topic) => {
      permitted.delete(topic);
      void following.get(topic)?.unsubscribe.then(
        (unsubscribe) => unsubscribe(),
        () => {},
      );
      following.delete(topic);
    };
    let removeOwner = () => {};
    const record = recordStream('websocket', request, {
      metrics,
      closers,
      shutdown: () => end('shutdown', 1001, 'server shutting down'),
    });
    const end = (reason: EndReason, code?: number, why?: string) => {
      if (!record.finish(reason, socket.bufferedAmount)) return;
      ended = true;
      clearInterval(ping);
      for (const topic of [...following.keys()]) stopFollowing(topic);
      removeOwner();
      if (code === undefined) {
        socket.terminate();
        return;
      }
      socket.close(code, why);
      // A client that never reads never answers the close: its bytes are let go anyway.
      setTimeout(() => socket.terminate(), 1000).unref();
    };
    const send = (message: string) => {
      if (ended) return;
      socket.send(message);
      if (socket.bufferedAmount > config.maxBufferedBytes)
        end('slow_consumer', 1013, `slow consumer: more than ${config.maxBufferedBytes} bytes unread`);
    };
    const reply = (message: Record<string, unknown>) => send(JSON.stringify(message));

    // A withdrawn permission of any subscribed topic ends the socket, as a withdrawn credential
    // does: the client learns it from the close, whichever topic it was.
    removeOwner = owners.add({
      ...owner,
      refusal: (identity) => {
        for (const topic of permitted) {
          const refused = topic.refusal(identity);
          if (refused) return refused;
        }
        return null;
      },
      end: (reason) => end('revoked', 1008, reason),
    });
    const ping = setInterval(() => {
      if (!alive) return end('unresponsive');
      alive = false;
      socket.ping();
    }, config.wsPingMs);
    socket.on('pong', () => {
      alive = true;
    });
    socket.on('close', () => end('closed'));

    // The identity is looked up again (through the identity cache) for each subscribe, so a
    // permission granted or withdrawn since the upgrade counts.
    const subscribe = (topic: Topic, after: number | undefined) => {
      const subscription = {} as { unsubscribe: Promise<() => void> };
      const isOpen = () => !ended && following.get(topic) === subscription;
      following.set(topic, subscription);
      subscription.unsubscribe = (async () => {
        let refused: Error | null;
        try {
          refused = topic.refusal(await deps.reauthenticate(owner.credential));
        } catch (err) {
          if (!(err instanceof InvalidAuthenticationTokenError)) throw err;
          end('revoked', 1008, err.message);
          return () => {};
        }
        if (refused) {
          if (isOpen()) {
            following.delete(topic);
            reply({ type: 'error', topic: topic.name, message: refused.message });
          }
          return () => {};
        }
        if (isOpen()) permitted.add(topic);
        const resume = after === undefined ? undefined : await resumePoint(deps.db, topic, after);
        if (isOpen()) reply({ type: 'subscribed', topic: topic.name });
        if (resume?.gap && isOpen()) reply({ type: 'gap', topic: topic.name, ...resume.gap });
        return follow(deps, feedOf(deps, topic), resume?.after, {
          send: (event) => {
            record.countSent();
            send(event.ws);
          },
          isOpen,
          unread: () => socket.bufferedAmount,
        });
      })();
      subscription.unsubscribe.catch((err) => {
        request.log.error({ err }, 'websocket subscription failed');
        end('error', 1011, 'subscription failed');
      });
    };
    socket.on('message', (data, isBinary) => {
      const message = isBinary ? undefined : parseMessage(data.toString());
      if (!message) return reply({ type: 'error', message: 'messages are JSON objects with a type' });
      const topic = TOPICS.find((t) => t.name === message.topic);
      if (!topic) return reply({ type: 'error', message: `unknown topic: the topics are ${TOPIC_LIST}` });
      if (message.type === 'subscribe') {
        const after = message.last_event_id;
        if (after !== undefined && !(Number.isSafeInteger(after) && (after as number) >= 0))
          return reply({ type: 'error', message: 'last_event_id must be a non-negative integer' });
        if (following.has(topic)) return reply({ type: 'subscribed', topic: topic.name });
        return subscribe(topic, after as number | undefined);
      }
      if (message.type === 'unsubscribe') {
        stopFollowing(topic);
        return reply({ type: 'unsubscribed', topic: topic.name });
      }
      reply({ type: 'error', message: 'type must be subscribe or unsubscribe' });
    });
  }
}

function parseMessage(text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
