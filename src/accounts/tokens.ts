// Stateful tokens as in the book: 16 random bytes, base32 without padding (26 characters)
// for the client; only the SHA-256 of that text is stored.
import { createHash, randomBytes } from 'node:crypto';

export const SCOPES = {
  activation: { name: 'activation', ttlMs: 3 * 24 * 3_600_000 },
  authentication: { name: 'authentication', ttlMs: 24 * 3_600_000 },
  passwordReset: { name: 'password-reset', ttlMs: 45 * 60_000 },
} as const;

export type Scope = (typeof SCOPES)[keyof typeof SCOPES]['name'];

export type Token = { plaintext: string; hash: Buffer; userId: number; expiry: Date; scope: Scope };

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

// RFC 4648 base32, no padding: what Go's base32.StdEncoding.WithPadding(NoPadding) writes.
export function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

export function hashToken(plaintext: string): Buffer {
  return createHash('sha256').update(plaintext).digest();
}

export function generateToken(
  userId: number,
  scope: (typeof SCOPES)[keyof typeof SCOPES],
  now = Date.now(),
): Token {
  const plaintext = base32(randomBytes(16));
  return {
    plaintext,
    hash: hashToken(plaintext),
    userId,
    expiry: new Date(now + scope.ttlMs),
    scope: scope.name,
  };
}
