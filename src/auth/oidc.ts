// Access tokens from an external OpenID Connect provider (-oidc-issuer): its discovery
// document names the JWKS, which jose fetches, caches (-oidc-jwks-cache) and fetches again
// for an unknown kid, so the provider's key rotation is followed. The token's `sub` is
// linked to a local user (oidc_identities); with -oidc-auto-provision a subject seen for
// the first time is linked to the user with its `email`, created if there is none.
import { createRemoteJWKSet, decodeJwt, errors, type JWTPayload, jwtVerify } from 'jose';
import { identityForUser, userForExternalEmail } from '../accounts/accounts.ts';
import type { IdentityCache } from '../accounts/identity-cache.ts';
import type { Db } from '../platform/db.ts';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';
import type { Logger } from '../platform/logger.ts';
import type { Authenticator } from './authenticator.ts';
import { isCompactJws } from './jwt.ts';
import { CLOCK_TOLERANCE_S } from './jwt-keys.ts';
import { linkUser, selectLinkedUser } from './oidc.sql.ts';

export type OidcSettings = Readonly<{
  issuer: string;
  audience: string;
  autoProvision: boolean;
  jwksCacheMs: number;
}>;

const FETCH_TIMEOUT_MS = 5000;
// Signatures only: a provider's access tokens are never verified with a shared secret.
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const MAX_LINKS_CACHED = 10_000;

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

export function oidcAuthenticator(
  settings: OidcSettings,
  db: Db,
  cache: IdentityCache | undefined,
  logger: Logger,
): Authenticator {
  const keys = remoteKeys(settings);
  const links = new Map<string, number>();

  const verify = async (token: string): Promise<JWTPayload> => {
    try {
      const { payload } = await jwtVerify(token, await keys(), {
        issuer: settings.issuer,
        audience: settings.audience,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        requiredClaims: ['sub', 'exp'],
      });
      return payload;
    } catch (err) {
      if (err instanceof errors.JWTExpired) throw new InvalidAuthenticationTokenError('expired');
      if (!(err instanceof errors.JOSEError)) logger.warn({ err }, 'OIDC provider unavailable');
      throw new InvalidAuthenticationTokenError();
    }
  };

  // The local user of a subject seen for the first time (or whose user was deleted).
  const linkedUser = async (payload: JWTPayload): Promise<number> => {
    const subject = payload.sub as string;
    const known = await selectLinkedUser(db, settings.issuer, subject);
    if (known !== undefined) return known;
    const email = payload.email;
    if (!settings.autoProvision || typeof email !== 'string' || payload.email_verified === false)
      throw new InvalidAuthenticationTokenError();
    const user = await userForExternalEmail(db, email.trim().toLowerCase());
    logger.info({ user_id: user.id, issuer: settings.issuer, subject }, 'linked external identity');
    return linkUser(db, settings.issuer, subject, user.id);
  };

  return {
    method: 'oidc',
    recognises: (credential) =>
      credential.from === 'authorization' &&
      isCompactJws(credential.value) &&
      issuerOf(credential.value) === settings.issuer,
    authenticate: async (credential) => {
      const payload = await verify(credential.value);
      const subject = payload.sub as string;
      const until = new Date((payload.exp as number) * 1000);
      const remembered = links.get(subject);
      if (remembered !== undefined) {
        try {
          return await identityForUser(db, remembered, cache, until);
        } catch (err) {
          if (!(err instanceof InvalidAuthenticationTokenError)) throw err;
          links.delete(subject);
        }
      }
      const userId = await linkedUser(payload);
      if (links.size >= MAX_LINKS_CACHED) links.clear();
      links.set(subject, userId);
      return identityForUser(db, userId, cache, until);
    },
  };
}
