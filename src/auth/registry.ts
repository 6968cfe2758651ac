// The one list of authenticators, and the request hook that asks them. Every endpoint of
// both APIs sees the same identity, whichever enabled credential the client sent.
import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { IdentityCache } from '../accounts/identity-cache.ts';
import type { Identity } from '../accounts/user.ts';
import type { AuthMethod, Config } from '../config.ts';
import type { Db } from '../platform/db.ts';
import { InvalidAuthenticationTokenError } from '../platform/errors.ts';
import { addVary } from '../platform/http.ts';
import type { Logger } from '../platform/logger.ts';
import { apiKeyAuthenticator } from './apikey.ts';
import type { Authenticator, Credential } from './authenticator.ts';
import { Jwts, jwtAuthenticator } from './jwt.ts';
import { ed25519Keys, secretKeys } from './jwt-keys.ts';
import { oidcAuthenticator } from './oidc.ts';
import { tokenAuthenticator } from './token.ts';

export type AuthDeps = Readonly<{
  config: Config;
  db: Db;
  cache: IdentityCache | undefined;
  logger: Logger;
  jwts: Jwts;
}>;

// In the order they are asked: the provider's JWTs before ours, which would claim any JWT.
const AUTHENTICATORS: Readonly<Record<AuthMethod, (deps: AuthDeps) => Authenticator>> = {
  oidc: ({ config, db, cache, logger }) => oidcAuthenticator(config.auth.oidc, db, cache, logger),
  token: ({ db, cache }) => tokenAuthenticator(db, cache),
  jwt: ({ db, cache, jwts }) => jwtAuthenticator(jwts, db, cache),
  apikey: ({ db, cache, logger }) => apiKeyAuthenticator(db, cache, logger),
};

export function createAuthenticators(deps: AuthDeps): Authenticator[] {
  const enabled = deps.config.auth.methods;
  return (Object.keys(AUTHENTICATORS) as AuthMethod[])
    .filter((method) => enabled.includes(method))
    .map((method) => AUTHENTICATORS[method](deps));
}

// The JWT issuer every instance shares. An HS256 secret is resolved before the app is built
// (server.ts); EdDSA keys are read from their directory, the first one made if it is empty.
// With jwt not among the methods, the seed's login still hands out a JWT (its contract),
// signed with a throw-away secret: no endpoint accepts it.
export function createJwts(config: Config): Jwts {
  const { auth } = config;
  let secret = auth.jwtSecret;
  if (auth.jwtAlgorithm === 'HS256' && secret === '') {
    if (auth.methods.includes('jwt'))
      throw new Error('the JWT secret must be resolved before building the app');
    secret = randomBytes(32).toString('base64url');
  }
  return new Jwts({
    keys: auth.jwtAlgorithm === 'EdDSA' ? ed25519Keys(auth.jwtKeyDir, auth.jwtTtlMs) : secretKeys(secret),
    issuer: auth.jwtIssuer,
    audience: auth.jwtAudience,
    ttlMs: auth.jwtTtlMs,
  });
}

export type TokenLookupLimits = Readonly<{
  // before a database lookup: refuse a client whose address has no rate-limit token left
  check: (request: FastifyRequest) => void | Promise<void>;
  // after a lookup that found nothing: charge the address for it
  charge: (request: FastifyRequest) => void | Promise<void>;
}>;

function credentialOf(
  request: FastifyRequest,
  anyCaseSchemeUnder: string | undefined,
): Credential | undefined {
  // The products API takes the scheme in any letter case as its Go code does; the book's
  // paths keep the book's exact "Bearer".
  const anyCase = anyCaseSchemeUnder !== undefined && request.url.startsWith(`${anyCaseSchemeUnder}/`);
  return headerCredential(request.headers, anyCase);
}

// The credential in an `authorization: Bearer …` or `x-api-key` header, of a request, of a
// gRPC call (its metadata) or of a message from the broker (src/broker/commands.ts); undefined
// when there is none.
export function headerCredential(
  headers: Readonly<Record<string, unknown>>,
  anyCaseScheme = false,
): Credential | undefined {
  const header = headers.authorization;
  // Missing and empty are the same to the book (Header.Get returns "").
  if (typeof header === 'string' && header !== '') {
    const [scheme = '', token, ...rest] = header.split(' ');
    const bearer = anyCaseScheme ? scheme.toLowerCase() === 'bearer' : scheme === 'Bearer';
    if (!bearer || token === undefined || rest.length > 0)
      throw new InvalidAuthenticationTokenError('format');
    return { from: 'authorization', value: token };
  }
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey !== '') return { from: 'x-api-key', value: apiKey };
  return undefined;
}

// The credential of a request the authentication hook has accepted, for a long-lived stream
// that asks the authenticators again while it runs (src/realtime/owners.ts).
export const requestCredential = (request: FastifyRequest): Credential | undefined =>
  credentialOf(request, undefined);

// The identity behind a credential, asked again of the authenticator that recognises it.
export function reauthenticator(authenticators: readonly Authenticator[]) {
  return (credential: Credential): Promise<Identity> => identityOf(authenticators, credential);
}

// Route config of the seed's public endpoints (register, login), which never look at the
// Authorization header: a stale token sent along must not make them fail.
export type RouteAuthConfig = { credentials?: 'ignored' };
export const IGNORES_CREDENTIALS: RouteAuthConfig = { credentials: 'ignored' };

// With `limits`, unknown credentials are rate limited per address, so made-up ones cannot
// make unlimited database lookups; valid ones cost their address nothing.
// `anyCaseSchemeUnder`: a path prefix under which "bearer" may be written in any case.
export function authenticationHook(
  authenticators: readonly Authenticator[],
  limits?: TokenLookupLimits,
  anyCaseSchemeUnder?: string,
) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    addVary(reply, 'Authorization');
    if ((request.routeOptions.config as RouteAuthConfig).credentials === 'ignored') return;
    const credential = credentialOf(request, anyCaseSchemeUnder);
    if (!credential) return;
    request.identity = await identityOf(
      authenticators,
      credential,
      limits && (() => limits.check(request)),
      limits && (() => limits.charge(request)),
    );
  };
}

// The identity behind a credential, asked of the authenticator that recognises it. `check`
// runs before a lookup a made-up credential could cause, `charge` after one that found nothing.
export async function identityOf(
  authenticators: readonly Authenticator[],
  credential: Credential,
  check?: () => void | Promise<void>,
  charge?: () => void | Promise<void>,
): Promise<Identity> {
  try {
    const authenticator = authenticators.find((a) => a.recognises(credential));
    if (!authenticator) throw new InvalidAuthenticationTokenError();
    return await authenticator.authenticate(credential, () => check?.());
  } catch (err) {
    if (err instanceof InvalidAuthenticationTokenError) await charge?.();
    throw err;
  }
}
