// Authentication as a plugin: every request's credential, on every route, is looked up and
// becomes `request.identity`. Registered after CORS and before rate limiting (app.ts).
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { isDatabaseUnavailable } from '../platform/errors.ts';
import type { Authenticator } from './authenticator.ts';
import { authenticationHook, type TokenLookupLimits } from './registry.ts';

export type AuthenticationOptions = Readonly<{
  authenticators: readonly Authenticator[];
  // unknown tokens are charged to the client's address
  budget: TokenLookupLimits;
  // a path prefix under which "bearer" may be written in any case (the products API)
  anyCaseSchemeUnder: string;
}>;

export const authenticationPlugin = fp(
  async (app: FastifyInstance, { authenticators, budget, anyCaseSchemeUnder }: AuthenticationOptions) => {
    app.decorateRequest('identity', null);
    const authenticate = authenticationHook(authenticators, budget, anyCaseSchemeUnder);
    // On a health probe a lookup the database cannot answer is ignored, so an outage never
    // makes the process look dead (liveness) and readiness says why it is not ready.
    app.addHook('onRequest', async (request, reply) => {
      try {
        await authenticate(request, reply);
      } catch (err) {
        if (!(request.routeOptions.config.probe && isDatabaseUnavailable(err))) throw err;
      }
    });
  },
  { name: 'authentication' },
);
