// Access tokens from an external OpenID Connect provider (-oidc-issuer): its discovery
// document names the JWKS, which jose fetches, caches (-oidc-jwks-cache) and fetches again
// for an unknown kid, so the provider's key rotation is followed. The token's `sub` is
// linked to a local user (oidc_identities). A subject becomes linked to an existing account
// only through that account's own explicit step (POST /v1/users/identities, oidc.routes.ts),
// never by a matching e-mail: with -oidc-auto-provision an unknown subject gets a NEW
// account, and only when the provider says its e-mail is verified and no account has it.
import { randomBytes } from 'node:crypto';
import { createRemoteJWKSet, decodeJwt, errors, type JWTPayload, jwtVerify } from 'jose';
import { EmailTakenError, identityForUser, registerUserWithoutMail } from '../accounts/accounts.ts';
import { insertLink, selectLinkedUser } from '../accounts/identities.sql.ts';
import type { IdentityCache } from '../accounts/identity-cache.ts';
import { isValidEmail } from '../accounts/user.ts';
import type { Db } from '../platform/db.ts';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import type { Authenticator } from './authenticator.ts';
import { isCompactJws } from './jwt.ts';
import { CLOCK_TOLERANCE_S } from './jwt-keys.ts';

export type OidcSettings = Readonly<{
  issuer: string;
  audience: string;
  autoProvision: boolean;
  jwksCacheMs: number;
}>;

const FETCH_TIMEOUT_MS = 5000;
// Signatures only: a provider's access tokens are never verified with a shared secret.
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
// OpenID Connect Core: a subject is at most 255 ASCII characters. Anything else (a NUL,
// which PostgreSQL's text cannot hold; kilobytes, over its index's row limit) is not a token
// of a provider we accept.
const SUBJECT = /^[ -~]{1,255}$/;
// An e-mail claim longer than this (the book's limit on a name) gets no account.
const MAX_EMAIL_BYTES = 500;

function issuerOf(token: string): string | undefined {
  try {
    return decodeJwt(token).iss;
  } catch {
    return undefined;
  }
}

// The provider's JWKS, found through its discovery document on first use (and again after
// a failure).
function remoteKeys(settings: OidcSettings) {
  let keys: Promise<ReturnType<typeof createRemoteJWKSet>> | undefined;
  const discover = async () => {
    const url = `${settings.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    const res = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (!res.ok) throw new Error(`OIDC discovery: ${url} answered ${res.status}`);
    const metadata = (await res.json()) as { issuer?: string; jwks_uri?: string };
    if (metadata.issuer !== settings.issuer) throw new Error(`OIDC discovery: issuer is ${metadata.issuer}`);
    if (!metadata.jwks_uri) throw new Error('OIDC discovery: no jwks_uri');
    return createRemoteJWKSet(new URL(metadata.jwks_uri), {
      timeoutDuration: FETCH_TIMEOUT_MS,
      cacheMaxAge: settings.jwksCacheMs,
      cooldownDuration: Math.min(30_000, settings.jwksCacheMs),
    });
  };
  return () => {
    keys ??= discover().catch((err: unknown) => {
      keys = undefined;
      throw err;
    });
    return keys;
  };
}

export type OidcVerifier = Readonly<{
  // Cheap, no I/O: does this look like a token of the provider?
  recognises: (token: string) => boolean;
  // The verified claims (issuer, audience, signature, expiry), or InvalidAuthenticationTokenError.
  verify: (token: string) => Promise<JWTPayload>;
}>;

export function oidcVerifier(settings: OidcSettings, logger: Logger): OidcVerifier {
  const keys = remoteKeys(settings);
  return {
    recognises: (token) => isCompactJws(token) && issuerOf(token) === settings.issuer,
    verify: async (token) => {
      try {
        const { payload } = await jwtVerify(token, await keys(), {
          issuer: settings.issuer,
          audience: settings.audience,
          algorithms: ALGORITHMS,
          clockTolerance: CLOCK_TOLERANCE_S,
          requiredClaims: ['sub', 'exp'],
        });
        if (!validSubject(payload.sub)) throw new InvalidAuthenticationTokenError();
        return payload;
      } catch (err) {
        if (err instanceof InvalidAuthenticationTokenError) throw err;
        if (err instanceof errors.JWTExpired) throw new InvalidAuthenticationTokenError('expired');
        if (!(err instanceof errors.JOSEError)) logger.warn({ err }, 'OIDC provider unavailable');
        throw new InvalidAuthenticationTokenError();
      }
    },
  };
}

function validSubject(sub: unknown): boolean {
  return typeof sub === 'string' && SUBJECT.test(sub);
}

// The e-mail a new account may be made for: one the provider says, literally, is verified.
// A missing or non-boolean email_verified proves nothing.
function verifiedEmail(payload: JWTPayload): string | undefined {
  if (payload.email_verified !== true || typeof payload.email !== 'string') return undefined;
  const email = payload.email.trim().toLowerCase();
  return isValidEmail(email) && Buffer.byteLength(email) <= MAX_EMAIL_BYTES ? email : undefined;
}

export function oidcAuthenticator(
  settings: OidcSettings,
  db: Db,
  cache: IdentityCache | undefined,
  logger: Logger,
): Authenticator {
  const { recognises, verify } = oidcVerifier(settings, logger);

  // A new account for a subject seen for the first time, linked in the same transaction.
  // An e-mail that has an account already is refused: its owner links the identity from
  // that account (POST /v1/users/identities), which proves control of both.
  const provision = async (payload: JWTPayload, subject: string): Promise<number> => {
    const email = verifiedEmail(payload);
    if (email === undefined) throw new InvalidAuthenticationTokenError();
    try {
      const user = await registerUserWithoutMail(
        db,
        { email, password: randomBytes(32).toString('base64url') },
        {},
        (client, created) => insertLink(client, settings.issuer, subject, created.id),
      );
      logger.info(
        { user_id: user.id, issuer: settings.issuer, subject },
        'provisioned a user for an external identity',
      );
      return user.id;
    } catch (err) {
      // a concurrent first request of the same subject may have provisioned it meanwhile
      const linked = await selectLinkedUser(db, settings.issuer, subject);
      if (linked !== undefined) return linked;
      if (err instanceof EmailTakenError) throw new InvalidAuthenticationTokenError('unlinked');
      throw err;
    }
  };

  const linkedUser = async (payload: JWTPayload): Promise<number> => {
    const subject = payload.sub as string;
    const known = await selectLinkedUser(db, settings.issuer, subject);
    if (known !== undefined) return known;
    if (!settings.autoProvision) throw new InvalidAuthenticationTokenError();
    return provision(payload, subject);
  };

  return {
    method: 'oidc',
    recognises: (credential) => credential.from === 'authorization' && recognises(credential.value),
    authenticate: async (credential) => {
      const payload = await verify(credential.value);
      // Read at every request, not remembered: a link its owner removes, or a password reset
      // removes, stops working at once on every instance.
      const userId = await linkedUser(payload);
      return identityForUser(db, userId, cache, new Date((payload.exp as number) * 1000));
    },
  };
}
