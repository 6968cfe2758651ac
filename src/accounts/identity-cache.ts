// An in-process cache of token → identity, so most authenticated requests need no query.
// Entries are dropped on every instance as soon as PostgreSQL delivers a NOTIFY on
// IDENTITY_CHANNEL, which the code that deletes tokens, changes users or grants/revokes
// permissions sends in the same transaction (so it arrives exactly when the change
// commits). While the listening connection is down the cache is bypassed and emptied.
import { listen } from '../platform/listener.ts';
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
  }

  clear(): void {
    this.generation++;
    this.#entries.clear();
    this.#keysByUser.clear();
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
  const stop = await listen(
    dsn,
    {
      channel: IDENTITY_CHANNEL,
      applicationName: 'greenlight-identity-listener',
      notification: (payload) => {
        const userId = Number(payload);
        if (Number.isInteger(userId)) cache.invalidateUser(userId);
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
    await stop();
  };
}
