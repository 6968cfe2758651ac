// GET /v1/movies/:id and GET /v1/movies answered from Redis (-redis-url), as the JSON text
// the route itself would send, so a cached answer is byte for byte an uncached one. Only the
// movie data is cached: permissions are checked on every request before this runs.
//
// Invalidation (docs/decisions.md, "Movie cache"): every committed change of movies INCRs a
// generation counter and DELs the changed movies' entries, in one script. A list entry is
// only valid at the generation it was stored under, so one INCR retires every list. A value
// read from PostgreSQL is stored only if the generation is still the one seen before the
// read began, so a reader that raced a commit cannot put the old value back after the
// invalidation. Entries live -cache-ttl from the moment their read began: the bound for a
// change whose invalidation never reached Redis (Redis down, the writer crashed after its
// commit). While Redis fails, requests read PostgreSQL (X-Cache: BYPASS).
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Redis as IORedis } from 'ioredis';
import prom from 'prom-client';
import type { Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import type { Logger } from '../platform/logger.ts';
import type { Metrics } from '../platform/metrics.ts';
import { type RedisConnection, RedisFallback, type RedisMetrics } from '../platform/redis.ts';
import type { MovieListQuery } from './filters.ts';
import { observeMovieChanges } from './movies.ts';

// One hash tag, so every key lands in one slot of a Redis Cluster and the scripts may use them all.
const PREFIX = 'greenlight:{movies}:';
const GENERATION = `${PREFIX}generation`;

// KEYS[1] generation, KEYS[2] entry; ARGV generation seen before the read, value, lifetime ms.
const FILL = `
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[1] .. '\\n' .. ARGV[2], 'PX', ARGV[3])
return 1
`;

// KEYS[1] generation, then the entries of the movies that changed.
const INVALIDATE = `
redis.call('INCR', KEYS[1])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
`;

type Scripts = IORedis & {
  greenlightMovieFill(
    generation: string,
    key: string,
    seen: string,
    value: string,
    ttlMs: number,
  ): Promise<number>;
  greenlightMovieInvalidate(numberOfKeys: number, ...keys: string[]): Promise<number>;
};

export type CacheResult = 'hit' | 'miss' | 'bypass';

export class MovieCache {
  readonly #redis: Scripts;
  readonly #ttlMs: number;
  readonly #fallback: RedisFallback;
  readonly #counter: prom.Counter<'result'>;

  constructor(redis: RedisConnection, ttlMs: number, fallback: RedisFallback, registry: prom.Registry) {
    this.#redis = redis.command as Scripts;
    this.#redis.defineCommand('greenlightMovieFill', { numberOfKeys: 2, lua: FILL });
    this.#redis.defineCommand('greenlightMovieInvalidate', { lua: INVALIDATE });
    this.#ttlMs = ttlMs;
    this.#fallback = fallback;
    this.#counter = new prom.Counter({
      name: 'greenlight_movie_cache_requests_total',
      help: 'Movie and movie-list reads by cache result: hit, miss (read from PostgreSQL and stored), bypass (Redis unavailable)',
      labelNames: ['result'],
      registers: [registry],
    });
  }

  // The response text of one movie, from the cache or from `load`.
  movie(reply: FastifyReply, id: string, load: () => Promise<unknown>): Promise<string> {
    return this.#serve(reply, movieKey(id), false, load);
  }

  // The response text of a list page; `query` is the normalized query the page answers.
  list(reply: FastifyReply, query: MovieListQuery, load: () => Promise<unknown>): Promise<string> {
    const digest = createHash('sha256').update(JSON.stringify(query)).digest('base64url');
    return this.#serve(reply, `${PREFIX}list:${digest}`, true, load);
  }

  // After a commit: every list is retired and the given movies' entries dropped. Never
  // throws; a failure leaves the entries to their lifetime (counted and logged).
  async changed(ids: readonly number[]): Promise<void> {
    const keys = [GENERATION, ...ids.map((id) => movieKey(String(id)))];
    try {
      await this.#redis.greenlightMovieInvalidate(keys.length, ...keys);
      this.#fallback.succeeded();
    } catch (err) {
      this.#fallback.failed(err);
    }
  }

  async #serve(
    reply: FastifyReply,
    key: string,
    perGeneration: boolean,
    load: () => Promise<unknown>,
  ): Promise<string> {
    const began = Date.now();
    let found: (string | null)[] | undefined;
    if (this.#fallback.available()) {
      try {
        found = await this.#redis.mget(GENERATION, key);
        this.#fallback.succeeded();
      } catch (err) {
        this.#fallback.failed(err);
      }
    }
    if (!found) return this.#answer(reply, 'bypass', serialize(reply, await load()));
    const generation = found[0] ?? '0';
    const entry = found[1];
    if (entry) {
      const cut = entry.indexOf('\n');
      if (!perGeneration || entry.slice(0, cut) === generation)
        return this.#answer(reply, 'hit', entry.slice(cut + 1));
    }
    const body = serialize(reply, await load());
    const lifetime = this.#ttlMs - (Date.now() - began);
    if (lifetime > 0) {
      this.#redis
        .greenlightMovieFill(GENERATION, key, generation, body, lifetime)
        .catch((err: unknown) => this.#fallback.failed(err));
    }
    return this.#answer(reply, 'miss', body);
  }

  #answer(reply: FastifyReply, result: CacheResult, body: string): string {
    this.#counter.inc({ result });
    reply.header('x-cache', result.toUpperCase()).type('application/json; charset=utf-8');
    return body;
  }
}

// The route's own response serializer, so the text is what an uncached answer would be.
function serialize(reply: FastifyReply, payload: unknown): string {
  return reply.serialize(payload) as string;
}

function movieKey(id: string): string {
  return `${PREFIX}movie:${id}`;
}

// The cache with -redis-url (none without), emptied of each movie a committed change touches.
export function createMovieCache(
  app: FastifyInstance,
  deps: Readonly<{
    config: Config;
    db: Db;
    logger: Logger;
    metrics: Metrics;
    redis?: RedisConnection;
    redisMetrics?: RedisMetrics;
  }>,
): MovieCache | undefined {
  const { config, redis, redisMetrics, logger, metrics } = deps;
  if (!redis || !redisMetrics) return undefined;
  const fallback = new RedisFallback('movie cache', logger, redisMetrics.fallbacks);
  const cache = new MovieCache(redis, config.cacheTtlMs, fallback, metrics.registry);
  const stopObserving = observeMovieChanges(deps.db, (ids) => cache.changed(ids));
  app.addHook('onClose', async () => {
    stopObserving();
  });
  return cache;
}
