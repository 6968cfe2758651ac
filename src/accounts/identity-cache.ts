// An in-process cache of token → identity, so most authenticated requests need no query.
// Entries are dropped on every instance as soon as PostgreSQL delivers a NOTIFY on
// IDENTITY_CHANNEL, which the code that deletes tokens, changes users or grants/revokes
// permissions sends in the same transaction (so it arrives exactly when the change
// commits). While the listening connection is down the cache is bypassed and emptied.
//
// With Redis, the same invalidations also ride Redis pub/sub: each process relays the
// NOTIFYs its own pool sent (PostgreSQL delivers them at commit, so the relay is after the
// commit too) to IDENTITY_REDIS_CHANNEL, and every process invalidates on what arrives there
// as well. NOTIFY stays the source of truth (transactional, and there without Redis); Redis
// is a second path for an instance whose LISTEN connection stalls without breaking.
import type pg from 'pg';
import type { Db } from '../platform/db.ts';
import { listen } from '../platform/listener.ts';
import type { Logger } from '../platform/logger.ts';
import type { RedisConnection } from '../platform/redis.ts';
import type { Identity } from './user.ts';

export const IDENTITY_CHANNEL = 'greenlight_identity';
export const IDENTITY_REDIS_CHANNEL = 'greenlight:identity';

// The pool whose NOTIFYs this process relays, and the Redis they are relayed through.
export type IdentityRelay = Readonly<{ redis: RedisConnection; db: Db }>;

type Entry = { identity: Identity; expiresAt: number };

export class IdentityCache {
  readonly #entries = new Map<string, Entry>();
  readonly #keysByUser = new Map<number, Set<string>>();
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  enabled = false;
  // Told of every invalidation (undefined: everyone's), after the entries are dropped; the
  // change streams re-check their owners on it.
  readonly #listeners = new Set<(userId: number | undefined) => void>();
  // Bumped by every invalidation: an answer read before a bump is not cached after it.
  generation = 0;

  constructor(options: { maxEntries?: number; ttlMs?: number } = {}) {
    this.#maxEntries = options.maxEntries ?? 50_000;
    this.#ttlMs = options.ttlMs ?? 60_000;
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): Identity | undefined {
    if (!this.enabled) return undefined;
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      this.#delete(key, entry.identity.id);
      return undefined;
    }
    return entry.identity;
  }

  set(key: string, identity: Identity, tokenExpiry: Date, readAtGeneration = this.generation): void {
    if (!this.enabled || readAtGeneration !== this.generation) return;
    if (this.#entries.size >= this.#maxEntries) {
      const [oldestKey, oldest] = this.#entries.entries().next().value as [string, Entry];
      this.#delete(oldestKey, oldest.identity.id);
    }
    this.#entries.set(key, {
      identity,
      expiresAt: Math.min(tokenExpiry.getTime(), Date.now() + this.#ttlMs),
    });
    const keys = this.#keysByUser.get(identity.id) ?? new Set<string>();
    keys.add(key);
    this.#keysByUser.set(identity.id, keys);
  }

  invalidateUser(userId: number): void {
    this.generation++;
    for (const key of this.#keysByUser.get(userId) ?? []) this.#entries.delete(key);
    this.#keysByUser.delete(userId);
    for (const listener of this.#listeners) listener(userId);
  }

  clear(): void {
    this.generation++;
    this.#entries.clear();
    this.#keysByUser.clear();
    for (const listener of this.#listeners) listener(undefined);
  }

  onInvalidation(listener: (userId: number | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #delete(key: string, userId: number): void {
    this.#entries.delete(key);
    const keys = this.#keysByUser.get(userId);
    keys?.delete(key);
    if (keys?.size === 0) this.#keysByUser.delete(userId);
  }
}

// Keeps one connection LISTENing; reconnects a second after a failure. Returns a stop function.
export async function listenForIdentityChanges(
  dsn: string,
  cache: IdentityCache,
  logger: Logger,
  relay?: IdentityRelay,
): Promise<() => Promise<void>> {
  const relaying = relay ? relayIdentityChanges(relay, cache) : undefined;
  const stop = await listen(
    dsn,
    {
      channel: IDENTITY_CHANNEL,
      applicationName: 'greenlight-identity-listener',
      notification: (payload, _client, processId) => {
        const userId = Number(payload);
        if (!Number.isInteger(userId)) return;
        cache.invalidateUser(userId);
        relaying?.relay(processId, String(userId));
      },
      connected: () => {
        cache.clear();
        cache.enabled = true;
      },
      lost: () => {
        cache.enabled = false;
        cache.clear();
      },
      lostMessage: 'identity cache listener lost; cache off until it reconnects',
    },
    logger,
  );
  return async () => {
    cache.enabled = false;
    relaying?.stop();
    await stop();
  };
}

// The backends of this process's pool are known by their PostgreSQL process id, which every
// notification names: only their NOTIFYs are relayed, so each change is published once.
function relayIdentityChanges({ redis, db }: IdentityRelay, cache: IdentityCache) {
  const own = new Set<number>();
  const backend = (connection: pg.PoolClient) => (connection as unknown as { processID: number }).processID;
  const added = (connection: pg.PoolClient) => own.add(backend(connection));
  const removed = (connection: pg.PoolClient) => own.delete(backend(connection));
  db.on('connect', added);
  db.on('remove', removed);
  const unsubscribe = redis.subscribe(IDENTITY_REDIS_CHANNEL, (message) => {
    const userId = Number(message);
    if (Number.isInteger(userId)) cache.invalidateUser(userId);
  });
  return {
    relay(processId: number, userId: string): void {
      // Lost while Redis is down: the NOTIFY has reached every listening instance anyway.
      if (own.has(processId)) redis.publish(IDENTITY_REDIS_CHANNEL, userId).catch(() => {});
    },
    stop(): void {
      unsubscribe();
      db.off('connect', added);
      db.off('remove', removed);
    },
  };
}
