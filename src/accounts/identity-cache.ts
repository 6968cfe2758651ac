// An in-process cache of token → identity, so most authenticated requests need no query.
// Entries are dropped on every instance as soon as PostgreSQL delivers a NOTIFY on
// IDENTITY_CHANNEL, which the code that deletes tokens, changes users or grants/revokes
// permissions sends in the same transaction (so it arrives exactly when the change
// commits). While the listening connection is down the cache is bypassed and emptied.
import pg from 'pg';
import type { Logger } from '../platform/logger.ts';
import type { Identity } from './user.ts';

export const IDENTITY_CHANNEL = 'greenlight_identity';

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
): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let stopped = false;
  let retry: NodeJS.Timeout | undefined;

  const connect = async (): Promise<void> => {
    const next = new pg.Client({ connectionString: dsn, application_name: 'greenlight-identity-listener' });
    let failed = false;
    const fail = (err?: Error) => {
      if (failed) return;
      failed = true;
      cache.enabled = false;
      cache.clear();
      if (client === next) client = undefined;
      next.end().catch(() => {});
      if (stopped) return;
      logger.warn({ err }, 'identity cache listener lost; cache off until it reconnects');
      retry = setTimeout(() => void connect(), 1000);
    };
    next.on('error', fail);
    next.on('end', () => fail());
    next.on('notification', (message) => {
      const userId = Number(message.payload);
      if (Number.isInteger(userId)) cache.invalidateUser(userId);
    });
    client = next;
    try {
      await next.connect();
      await next.query(`LISTEN ${IDENTITY_CHANNEL}`);
    } catch (err) {
      fail(err as Error);
      return;
    }
    cache.clear();
    cache.enabled = true;
  };

  await connect();
  return async () => {
    stopped = true;
    clearTimeout(retry);
    cache.enabled = false;
    await client?.end().catch(() => {});
  };
}
