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

export function authenticationHook(db: Db, cache?: IdentityCache) {
  return async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    addVary(reply, 'Authorization');
    const header = request.headers.authorization;
    if (header === undefined) return;
    const [scheme, token, ...rest] = header.split(' ');
    if (scheme !== 'Bearer' || token === undefined || rest.length > 0)
      throw new InvalidAuthenticationTokenError();
    request.identity = await authenticate(db, token, cache);
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
