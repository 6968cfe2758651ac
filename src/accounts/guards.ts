// Authorization as request hooks: requireAuthenticated, or requirePermission (authenticated,
// activated, holding the permission) per route. Authentication itself is src/auth/registry.ts.
import type { FastifyRequest } from 'fastify';
import { AuthenticationRequiredError, InactiveAccountError, NotPermittedError } from '../platform/errors.ts';
import type { Identity } from './user.ts';

declare module 'fastify' {
  interface FastifyRequest {
    // null for an anonymous request
    identity: Identity | null;
  }
}

export async function requireAuthenticated(request: FastifyRequest): Promise<void> {
  if (request.identity === null) throw new AuthenticationRequiredError();
}

// Why an identity may not use `code` (or no longer: a stream re-checks it), or null when it may.
export function permissionRefusal(identity: Identity | null, code: string): Error | null {
  if (identity === null) return new AuthenticationRequiredError();
  if (!identity.activated) return new InactiveAccountError();
  if (!identity.permissions.includes(code)) return new NotPermittedError();
  return null;
}

export function requirePermission(code: string) {
  return async (request: FastifyRequest): Promise<void> => {
    const refused = permissionRefusal(request.identity, code);
    if (refused) throw refused;
  };
}

// Admins (the role) with a full credential: an API key, whatever its scopes, is never enough.
export async function requireAdmin(request: FastifyRequest): Promise<void> {
  await requireAuthenticated(request);
  if (request.identity?.role !== 'admin' || request.identity.scopes) throw new NotPermittedError();
}
