// JWTs (seed 002's access tokens) with jose: HS256 with one secret or EdDSA with rotating
// keys (jwt-keys.ts), the algorithm pinned, iss/aud/exp/nbf/iat required, 30 s of skew. A JWT names its user and that user's
// token generation; bumping the generation (password reset, role change, log out
// everywhere) ends every earlier JWT, on every instance through the identity cache's NOTIFY.
import { errors, jwtVerify, SignJWT } from 'jose';
import { identityForUser } from '../accounts/accounts.ts';
import type { IdentityCache } from '../accounts/identity-cache.ts';
import type { User } from '../accounts/user.ts';
import type { Db } from '../platform/db.ts';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';
import type { Authenticator } from './authenticator.ts';
import { CLOCK_TOLERANCE_S, type JwtKeys } from './jwt-keys.ts';

export type JwtSettings = Readonly<{ keys: JwtKeys; issuer: string; audience: string; ttlMs: number }>;
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;
const USER_ID = /^[1-9][0-9]{0,15}$/;

const VERIFIED_TOKENS_KEPT = 10_000;

export type VerifiedJwt = Readonly<{ userId: number; generation: number; expiresAt: Date }>;

export class Jwts {
  readonly #settings: JwtSettings;
  readonly #verified = new Map<string, VerifiedJwt>();

  constructor(settings: JwtSettings) {
    this.#settings = settings;
  }

  // The public keys as a JWKS (EdDSA only).
  jwks(): { keys: Record<string, unknown>[] } | undefined {
    return this.#settings.keys.jwks?.();
  }

  // The seed's claims (user_id, email, role) next to the registered ones.
  async issue(user: Pick<User, 'id' | 'email' | 'role' | 'tokenGeneration'>): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const { key, kid } = this.#settings.keys.signing();
    return new SignJWT({ user_id: user.id, email: user.email, role: user.role, gen: user.tokenGeneration })
      .setProtectedHeader({ alg: this.#settings.keys.algorithm, typ: 'JWT', ...(kid ? { kid } : {}) })
      .setSubject(String(user.id))
      .setIssuer(this.#settings.issuer)
      .setAudience(this.#settings.audience)
      .setIssuedAt(now)
      .setNotBefore(now)
      .setExpirationTime(now + Math.floor(this.#settings.ttlMs / 1000))
      .sign(key);
  }

  // A token verified once is known by its exact text until it expires: jose's WebCrypto
  // verification costs more than the rest of a cached request (half of S2's rate in the
  // benchmark without this). Revocation is unaffected: the generation is compared on every
  // request.
  async verify(token: string): Promise<VerifiedJwt> {
    const known = this.#verified.get(token);
    if (known) {
      if (known.expiresAt.getTime() + CLOCK_TOLERANCE_S * 1000 > Date.now()) return known;
      this.#verified.delete(token);
    }
    const verified = await this.#verifySignatureAndClaims(token);
    if (this.#verified.size >= VERIFIED_TOKENS_KEPT)
      this.#verified.delete(this.#verified.keys().next().value as string);
    this.#verified.set(token, verified);
    return verified;
  }

  async #verifySignatureAndClaims(token: string): Promise<VerifiedJwt> {
    try {
      const keys = this.#settings.keys;
      const { payload } = await jwtVerify(token, async (header) => keys.verifying(header), {
        algorithms: [keys.algorithm],
        issuer: this.#settings.issuer,
        audience: this.#settings.audience,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['sub', 'iat', 'nbf', 'exp'],
      });
      // The id as we write it, a plain decimal: Number() would also read "2.0", "0x2" or " 2".
      const userId = typeof payload.sub === 'string' && USER_ID.test(payload.sub) ? Number(payload.sub) : 0;
      const generation = payload.gen;
      if (!Number.isSafeInteger(userId) || userId < 1 || !Number.isSafeInteger(generation))
        throw new InvalidAuthenticationTokenError();
      return {
        userId,
        generation: generation as number,
        expiresAt: new Date((payload.exp as number) * 1000),
      };
    } catch (err) {
      if (err instanceof InvalidAuthenticationTokenError) throw err;
      if (err instanceof errors.JWTExpired) throw new InvalidAuthenticationTokenError('expired');
      if (err instanceof errors.JOSEError) throw new InvalidAuthenticationTokenError();
      throw err;
    }
  }
}

export function isCompactJws(value: string): boolean {
  return COMPACT_JWS.test(value);
}

export function jwtAuthenticator(jwts: Jwts, db: Db, cache: IdentityCache | undefined): Authenticator {
  return {
    method: 'jwt',
    recognises: (credential) => credential.from === 'authorization' && isCompactJws(credential.value),
    // A verified signature means we issued it: no rate-limit check before the lookup.
    authenticate: async (credential) => {
      const jwt = await jwts.verify(credential.value);
      const identity = await identityForUser(db, jwt.userId, cache, jwt.expiresAt);
      if (identity.tokenGeneration !== jwt.generation) throw new InvalidAuthenticationTokenError();
      return identity;
    },
  };
}
