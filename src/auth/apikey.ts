// API keys: "glk_" and 32 base64url characters (192 random bits), shown once; only the
// SHA-256 is stored. A key acts for its user with at most its scopes: the user's own
// permissions cut down to them, plus products:read / products:write for the products API and orders:read / orders:write
// for its orders.
import { createHash, randomBytes } from 'node:crypto';
import { identityForUser } from '../accounts/accounts.ts';
import * as keys from '../accounts/api-keys.sql.ts';
import type { IdentityCache } from '../accounts/identity-cache.ts';
import type { Identity } from '../accounts/user.ts';
import { notifyIdentityChanged } from '../accounts/users.sql.ts';
import { type AuditContext, recordEvent } from '../audit/audit.ts';
import { type Db, withTransaction } from '../platform/db.ts';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import type { Authenticator } from './authenticator.ts';

export const API_KEY_PREFIX = 'glk_';
const API_KEY_FORMAT = /^glk_[A-Za-z0-9_-]{32}$/;
// What a listing shows of a key: enough to tell keys apart, far too little to guess one.
const SHOWN_PREFIX_LENGTH = 12;
export const API_KEY_SCOPES = [
  'products:read',
  'products:write',
  'orders:read',
  'orders:write',
  'movies:read',
  'movies:write',
  'metrics:view',
] as const;
const TOUCH_INTERVAL_MS = 60_000;
// The cache keeps a key's identity this long at most even when the key never expires.
const FAR_FUTURE = new Date(8.64e15);

export type { ApiKey } from '../accounts/api-keys.sql.ts';

function hashKey(plaintext: string): Buffer {
  return createHash('sha256').update(plaintext).digest();
}

// For the identity of the credential that asks: once a password reset or a logout
// everywhere has ended that credential (a new token generation), no key is made with it.
export async function createApiKey(
  db: Db,
  identity: Pick<Identity, 'id' | 'tokenGeneration'>,
  input: { name: string; scopes: string[]; expiresAt: Date | null },
  context: AuditContext,
): Promise<{ key: keys.ApiKey; plaintext: string }> {
  const plaintext = API_KEY_PREFIX + randomBytes(24).toString('base64url');
  const userId = identity.id;
  const key = await withTransaction(db, async (client) => {
    const inserted = await keys.insertApiKey(
      client,
      {
        userId,
        name: input.name,
        prefix: plaintext.slice(0, SHOWN_PREFIX_LENGTH),
        hash: hashKey(plaintext),
        scopes: [...new Set(input.scopes)],
        expiresAt: input.expiresAt,
      },
      identity.tokenGeneration,
    );
    if (!inserted) throw new InvalidAuthenticationTokenError();
    const details = { api_key_id: inserted.id, name: inserted.name, scopes: inserted.scopes };
    await recordEvent(client, 'apikey.create', { actorId: userId, details }, context);
    return inserted;
  });
  return { key, plaintext };
}

export function listApiKeys(db: Db, userId: number): Promise<keys.ApiKey[]> {
  return keys.selectApiKeysForUser(db, userId);
}

// Whether the user had that key. Every instance forgets it once the deletion commits.
export function revokeApiKey(db: Db, userId: number, id: string, context: AuditContext): Promise<boolean> {
  return withTransaction(db, async (client) => {
    const deleted = await keys.deleteApiKey(client, id, userId);
    if (!deleted) return false;
    await notifyIdentityChanged(client, userId);
    await recordEvent(
      client,
      'apikey.revoke',
      { actorId: userId, details: { api_key_id: Number(id) } },
      context,
    );
    return true;
  });
}

export function apiKeyAuthenticator(db: Db, cache: IdentityCache | undefined, logger: Logger): Authenticator {
  const lastTouched = new Map<number, number>();
  const touch = (identity: Identity) => {
    const id = identity.apiKeyId as number;
    const now = Date.now();
    if (now - (lastTouched.get(id) ?? 0) < TOUCH_INTERVAL_MS) return;
    lastTouched.set(id, now);
    keys
      .touchApiKey(db, id)
      .catch((err: unknown) => logger.warn({ err, api_key_id: id }, 'last_used_at not written'));
  };
  return {
    method: 'apikey',
    recognises: (credential) => credential.value.startsWith(API_KEY_PREFIX),
    authenticate: async (credential, beforeLookup) => {
      if (!API_KEY_FORMAT.test(credential.value)) throw new InvalidAuthenticationTokenError();
      const hash = hashKey(credential.value);
      const cacheKey = `apikey:${hash.toString('base64')}`;
      const cached = cache?.get(cacheKey);
      if (cached) {
        touch(cached);
        return cached;
      }
      await beforeLookup();
      const generation = cache?.generation;
      const key = await keys.selectValidApiKey(db, hash);
      if (!key) throw new InvalidAuthenticationTokenError();
      const user = await identityForUser(db, key.userId, cache, key.expiresAt ?? FAR_FUTURE);
      const identity: Identity = {
        ...user,
        permissions: user.permissions.filter((code) => key.scopes.includes(code)),
        scopes: key.scopes,
        apiKeyId: key.id,
      };
      if (generation !== undefined) cache?.set(cacheKey, identity, key.expiresAt ?? FAR_FUTURE, generation);
      touch(identity);
      return identity;
    },
  };
}
