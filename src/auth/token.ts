// The book's stateful tokens: 26 characters of base32, looked up by their SHA-256.
import { authenticate } from '../accounts/accounts.ts';
import type { IdentityCache } from '../accounts/identity-cache.ts';
import type { Db } from '../platform/db.ts';
import type { Authenticator } from './authenticator.ts';

export function tokenAuthenticator(db: Db, cache: IdentityCache | undefined): Authenticator {
  return {
    method: 'token',
    // The book refuses any other length without a query (checkTokenPlaintext).
    recognises: (credential) => credential.from === 'authorization' && credential.value.length === 26,
    authenticate: (credential, beforeLookup) => authenticate(db, credential.value, cache, beforeLookup),
  };
}
