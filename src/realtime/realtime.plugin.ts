// The realtime module's part of the app: the process's event feeds (one per topic, each
// started by its first stream), the stream owners they re-check, the wakeups that publish
// committed changes, and the WebSocket server. The routes are realtime.routes.ts.
import websocket from '@fastify/websocket';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { WebSocket } from 'ws';
import type { IdentityCache } from '../accounts/identity-cache.ts';
import type { Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import type { GreenlightServer } from '../platform/http-server.ts';
import type { Logger } from '../platform/logger.ts';
import type { Metrics } from '../platform/metrics.ts';
import type { RedisConnection } from '../platform/redis.ts';
import { EventFeed } from './feed.ts';
import { type Reauthenticate, StreamOwners } from './owners.ts';
import type { RealtimeDeps } from './stream.ts';
import { TOPICS } from './topics.ts';
import {
  notifyPublisher,
  postgresWakeups,
  publishWakeups,
  redisPublisher,
  redisWakeups,
  type WakeupSource,
} from './wakeups.ts';

export type RealtimeOptions = Readonly<{
  config: Config;
  db: Db;
  logger: Logger;
  metrics: Metrics;
  reauthenticate: Reauthenticate;
  redis?: RedisConnection;
  identityCache?: IdentityCache;
}>;

// `wakeups`: what wakes each topic's readers after a commit anywhere (the broker relay's too).
export type Realtime = RealtimeDeps & Readonly<{ wakeups: WakeupSource; stop: () => Promise<void> }>;

// An identity invalidation re-checks that user's streams at once.
export function createRealtime(options: RealtimeOptions): Realtime {
  const { config, db, logger, redis, identityCache, reauthenticate } = options;
  const wakeups = redis
    ? redisWakeups(redis)
    : postgresWakeups(db.options.connectionString ?? '', TOPICS, logger);
  const feeds = new Map(
    TOPICS.map((topic) => [
      topic.name,
      new EventFeed({ topic, db, wakeups: wakeups(topic), logger, pollMs: config.events.pollMs }),
    ]),
  );
  const owners = new StreamOwners({ reauthenticate, logger });
  const stopWatchingIdentities = identityCache?.onInvalidation((userId) => owners.identityChanged(userId));
  const publisher = redis ? redisPublisher(redis) : notifyPublisher(db);
  const stopPublishing = TOPICS.map((topic) => publishWakeups(publisher, topic, db, logger));
  return {
    db,
    feeds,
    owners,
    config: config.events,
    metrics: options.metrics,
    reauthenticate,
    closers: new Set(),
    wakeups,
    stop: async () => {
      for (const stop of stopPublishing) stop();
      stopWatchingIdentities?.();
      owners.stop();
      await Promise.all([...feeds.values()].map((feed) => feed.stop()));
    },
  };
}

// An error on an open WebSocket. What the client did (a frame over maxPayload, a protocol
// violation: ws's WS_ERR_ codes, after it has sent the matching close code; a dropped
// connection) is logged at info, as the HTTP port logs a client's errors; anything else (a
// handler that threw) is ours, at error. The socket is cut either way.
function socketError(error: Error, socket: WebSocket, request: FastifyRequest): void {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (code.startsWith('WS_ERR_') || code === 'ECONNRESET' || code === 'EPIPE') {
    request.log.info({ code, reason: error.message }, 'websocket client error');
  } else {
    request.log.error({ err: error }, 'websocket failed');
  }
  socket.terminate();
}

// The WebSocket server. Open streams end first, each in its own way (WebSocket clients with
// 1001), then the WebSocket server closes. Client messages are a few bytes of JSON.
export const websocketPlugin = fp(
  async (app: FastifyInstance, { realtime }: { realtime: Realtime }) => {
    // The server switches protocols only on these paths (platform/http-server.ts).
    app.addHook('onRoute', (route) => {
      if (route.wsHandler) (app.server as GreenlightServer).webSocketPaths.add(route.url);
    });
    await app.register(websocket, {
      options: { maxPayload: 4096 },
      errorHandler: socketError,
      preClose(done) {
        for (const close of realtime.closers) close();
        this.websocketServer.close(() => done());
      },
    });
    // From its 101 on, the connection is the WebSocket's to close, not the HTTP drain's.
    app.websocketServer.on('connection', (_socket, req) =>
      (app.server as GreenlightServer).switchedProtocols(req.socket),
    );
    app.addHook('onClose', async () => realtime.stop());
  },
  { name: 'websocket' },
);
