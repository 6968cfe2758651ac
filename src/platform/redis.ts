// The optional Redis connection (-redis-url): one command connection and one subscriber
// connection per process, shared by every feature that uses Redis. Redis is never required
// to serve: commands fail fast while it is down (no offline queue, a short command timeout),
// so callers fall back to local behaviour instead of waiting, and ioredis reconnects on its
// own with a capped backoff. `status()` is what readiness and metrics report.
import type { Redis as IORedis } from 'ioredis';
import prom from 'prom-client';
import type { Logger } from './logger.ts';

export type RedisHandler = (message: string) => void;

export type RedisConnection = Readonly<{
  // For commands; rejects at once while disconnected.
  command: IORedis;
  // 'ok', or why Redis cannot be used right now.
  status(): string;
  publish(channel: string, message: string): Promise<void>;
  // Handlers run for every message on the channel, from any process; returns an unsubscribe.
  subscribe(channel: string, handler: RedisHandler): () => void;
  close(): Promise<void>;
}>;

// Past this a command counts as failed, so a stalled Redis cannot hold a request up.
const COMMAND_TIMEOUT_MS = 250;
const CONNECT_TIMEOUT_MS = 1000;
const MAX_RECONNECT_DELAY_MS = 2000;

function options(name: string) {
  return {
    connectionName: name,
    connectTimeout: CONNECT_TIMEOUT_MS,
    retryStrategy: (attempt: number) => Math.min(attempt * 100, MAX_RECONNECT_DELAY_MS),
    // Reconnection is ours to run forever; a single command must not wait for it.
    maxRetriesPerRequest: 0,
    lazyConnect: true,
  };
}

export async function connectRedis(url: string, logger: Logger): Promise<RedisConnection> {
  // Imported here: a process without -redis-url never loads the client.
  const { Redis } = await import('ioredis');
  const command = new Redis(url, {
    ...options('greenlight'),
    enableOfflineQueue: false,
    commandTimeout: COMMAND_TIMEOUT_MS,
  });
  // A subscription asked for while Redis is down waits for it (null: no retry limit), and
  // ioredis replays every subscription after a reconnect (autoResubscribe).
  const subscriber = new Redis(url, {
    ...options('greenlight-subscriber'),
    enableOfflineQueue: true,
    maxRetriesPerRequest: null,
  });
  const handlers = new Map<string, Set<RedisHandler>>();
  let lastError = 'connecting';
  let lost = false;
  let closing = false;

  command.on('ready', () => {
    if (lost) logger.info('redis connection restored');
    lost = false;
    lastError = 'ok';
  });
  command.on('error', (err: Error) => {
    lastError = `unreachable: ${err.message}`;
  });
  command.on('close', () => {
    if (lastError === 'ok') lastError = 'unreachable: connection closed';
    if (!lost && !closing)
      logger.warn({ reason: lastError }, 'redis connection lost; serving without it until it returns');
    lost = true;
  });
  subscriber.on('error', () => {});
  subscriber.on('message', (channel: string, message: string) => {
    for (const handler of handlers.get(channel) ?? []) handler(message);
  });

  // A Redis that is down at start is not fatal: the process serves and keeps reconnecting.
  await command.connect().catch((err: Error) => {
    lastError = `unreachable: ${err.message}`;
    logger.warn({ reason: lastError }, 'redis unreachable at start; serving without it until it answers');
    lost = true;
  });
  subscriber.connect().catch(() => {});

  return {
    command,
    status: () => (command.status === 'ready' ? 'ok' : lastError),
    async publish(channel, message) {
      await command.publish(channel, message);
    },
    subscribe(channel, handler) {
      let set = handlers.get(channel);
      if (!set) {
        set = new Set();
        handlers.set(channel, set);
        subscriber.subscribe(channel).catch((err: Error) => {
          logger.warn({ err, channel }, 'redis subscribe failed; retried on reconnect');
        });
      }
      set.add(handler);
      return () => {
        set.delete(handler);
        if (set.size > 0) return;
        handlers.delete(channel);
        subscriber.unsubscribe(channel).catch(() => {});
      };
    },
    async close() {
      closing = true;
      command.disconnect();
      subscriber.disconnect();
    },
  };
}

// After a failure, Redis is left alone this long: a stalled Redis costs one request a
// command timeout once a second, not every request (or every command of one) each time.
const RETRY_AFTER_FAILURE_MS = 1000;

// One use of Redis (the limiter, the movie cache) serving without it: every request that
// falls back is counted, but only the start and the end of an outage are logged.
export class RedisFallback {
  readonly #use: string;
  readonly #logger: Logger;
  readonly #counter: prom.Counter<'use'>;
  #down = false;
  #failedAt = 0;

  constructor(use: string, logger: Logger, counter: prom.Counter<'use'>) {
    this.#use = use;
    this.#logger = logger;
    this.#counter = counter;
  }

  // Whether to try Redis now; false (counted as a fallback) for a second after a failure.
  available(): boolean {
    if (!this.#down || performance.now() - this.#failedAt >= RETRY_AFTER_FAILURE_MS) return true;
    this.#counter.inc({ use: this.#use });
    return false;
  }

  failed(err: unknown): void {
    this.#counter.inc({ use: this.#use });
    this.#failedAt = performance.now();
    if (this.#down) return;
    this.#down = true;
    this.#logger.warn({ err, use: this.#use }, `redis unavailable: ${this.#use} falls back to this process`);
  }

  succeeded(): void {
    if (!this.#down) return;
    this.#down = false;
    this.#logger.info({ use: this.#use }, `redis answers again: ${this.#use} shared again`);
  }
}

export type RedisMetrics = Readonly<{ fallbacks: prom.Counter<'use'> }>;

export function registerRedisMetrics(registry: prom.Registry, redis: RedisConnection): RedisMetrics {
  new prom.Gauge({
    name: 'greenlight_redis_up',
    help: '1 while the Redis connection (-redis-url) is usable, 0 while requests fall back without it',
    registers: [registry],
    collect() {
      this.set(redis.status() === 'ok' ? 1 : 0);
    },
  });
  return {
    fallbacks: new prom.Counter({
      name: 'greenlight_redis_fallbacks_total',
      help: 'Requests served without Redis although -redis-url is set (Redis down or slower than 250 ms), by use',
      labelNames: ['use'],
      registers: [registry],
    }),
  };
}
