// Authorization as request hooks: requireAuthenticated → requireActivated →
// requirePermission (per route). Authentication itself is src/auth/registry.ts.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuthenticationRequiredError, InactiveAccountError, NotPermittedError } from '../platform/errors.ts';
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

// Admins (the role) with a full credential: an API key, whatever its scopes, is never enough.
export async function requireAdmin(request: FastifyRequest): Promise<void> {
  await requireAuthenticated(request);
  if (request.identity?.role !== 'admin' || request.identity.scopes) throw new NotPermittedError();
}
