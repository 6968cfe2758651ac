// Authentication and authorization as request hooks: authenticate (every request) →
// requireAuthenticated → requireActivated → requirePermission (per route).
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Db } from '../platform/db.ts';
import {
  AuthenticationRequiredError,
  InactiveAccountError,
  InvalidAuthenticationTokenError,
  NotPermittedError,
} from '../platform/errors.ts';
import { authenticate } from './accounts.ts';
import type { IdentityCache } from './identity-cache.ts';
import type { Identity } from './user.ts';

declare module 'fastify' {
  interface FastifyRequest {
    // null for an anonymous request
    identity: Identity | null;
  }
}

export function addVary(reply: FastifyReply, value: string): void {
  const current = reply.getHeader('vary');
  reply.header('vary', current ? `${current}, ${value}` : value);
}

export type TokenLookupLimits = Readonly<{
  // before a database lookup: refuse a client whose address has no rate-limit token left
  check: (request: FastifyRequest) => void;
  // after a lookup that found nothing: charge the address for it
  charge: (request: FastifyRequest) => void;
}>;

// With `limits`, unknown tokens are rate limited per address, so made-up tokens cannot make
// unlimited database lookups; valid tokens cost their address nothing.
export function authenticationHook(db: Db, cache?: IdentityCache, limits?: TokenLookupLimits) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    addVary(reply, 'Authorization');
    const header = request.headers.authorization;
    // Missing and empty are the same to the book (Header.Get returns "").
    if (!header) return;
    const [scheme, token, ...rest] = header.split(' ');
    if (scheme !== 'Bearer' || token === undefined || rest.length > 0)
      throw new InvalidAuthenticationTokenError();
    try {
      request.identity = await authenticate(db, token, cache, () => limits?.check(request));
    } catch (err) {
      if (err instanceof InvalidAuthenticationTokenError) limits?.charge(request);
      throw err;
    }
  };
}

export async function requireAuthenticated(request: FastifyRequest): Promise<void> {
  if (request.identity === null) throw new AuthenticationRequiredError();
}

export async function requireActivated(request: FastifyRequest): Promise<void> {
  await requireAuthenticated(request);
  if (!request.identity?.activated) throw new InactiveAccountError();
}

export function requirePermission(code: string) {
  return async (request: FastifyRequest): Promise<void> => {
    await requireActivated(request);
    if (!request.identity?.permissions.includes(code)) throw new NotPermittedError();
  };
}
