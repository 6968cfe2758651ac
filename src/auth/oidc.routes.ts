// POST /v1/users/identities: the one way an external provider's identity becomes linked to an
// existing account. The request proves control of both: it is authenticated with the
// account's own credential (a book token or a JWT of ours, never an API key or a provider
// token) and carries a token of the provider, whose subject is then linked to the account.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { requireAuthenticated } from '../accounts/guards.ts';
import type { Identity } from '../accounts/user.ts';
import { contextOf, recordEvent } from '../audit/audit.ts';
import type { Config } from '../config.ts';
import { type Db, withTransaction } from '../platform/db.ts';
import { InvalidAuthenticationTokenError, NotPermittedError, ValidationError } from '../platform/errors.ts';
import { bookBody, type DecodedBody } from '../platform/json-body.ts';
import type { Logger } from '../platform/logger.ts';
import { BEARER_REQUIRED, errors, response } from '../platform/schemas.ts';
import { Validator } from '../platform/validator.ts';
import { linkUser } from './oidc.sql.ts';
import { type OidcVerifier, oidcVerifier } from './oidc.ts';

export const IDENTITIES_PATH = '/v1/users/identities';

const LinkIdentityBody = bookBody(
  Type.Object(
    {
      provider_token: Type.String({
        description:
          'a token of the -oidc-issuer provider for -oidc-audience, as Greenlight accepts it as a credential: its subject is linked',
        examples: ['eyJhbGciOiJSUzI1NiIsImtpZCI6ImtleS0xIn0.eyJzdWIiOiJzaG9wLWJhY2tlbmQifQ.c2ln'],
      }),
    },
    { additionalProperties: false },
  ),
);

const IdentityEnvelope = Type.Object(
  {
    identity: Type.Object(
      {
        issuer: Type.String({ examples: ['https://id.example.com'] }),
        subject: Type.String({ examples: ['248289761001'] }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const INVALID_PROVIDER_TOKEN = 'invalid or expired provider token';

// The account's own credential: an API key may do less than its user, and a provider token
// proves control of the provider's identity only, never of the account.
function requireAccountCredential(verifier: OidcVerifier) {
  return async (request: FastifyRequest): Promise<void> => {
    await requireAuthenticated(request);
    const [, token = ''] = (request.headers.authorization ?? '').split(' ');
    if (request.identity?.scopes || verifier.recognises(token)) throw new NotPermittedError();
  };
}

// Only with -auth-methods oidc.
export async function identityRoutes(
  app: FastifyInstance,
  deps: { config: Config; db: Db; logger: Logger },
): Promise<void> {
  if (!deps.config.auth.methods.includes('oidc')) return;
  const settings = deps.config.auth.oidc;
  const verifier = oidcVerifier(settings, deps.logger);

  app.post(
    IDENTITIES_PATH,
    {
      onRequest: requireAccountCredential(verifier),
      schema: {
        operationId: 'linkIdentity',
        summary:
          "Link the provider identity of a provider token to the caller's account (authenticated with the account's own token or JWT)",
        tags: ['users'],
        security: BEARER_REQUIRED,
        body: LinkIdentityBody,
        response: {
          200: response(IdentityEnvelope, 'Linked to this account already'),
          201: response(IdentityEnvelope, 'Linked: the provider token now acts as this account'),
          ...errors(400, 403, 422, 500),
        },
      },
    },
    async (request, reply) => {
      const input = request.body as DecodedBody<typeof LinkIdentityBody>;
      const v = new Validator();
      v.check((input.provider_token ?? '') !== '', 'provider_token', 'must be provided');
      v.assertValid();
      let subject: string;
      try {
        subject = (await verifier.verify(input.provider_token as string)).sub as string;
      } catch (err) {
        if (err instanceof InvalidAuthenticationTokenError)
          throw new ValidationError({ provider_token: INVALID_PROVIDER_TOKEN });
        throw err;
      }
      const userId = (request.identity as Identity).id;
      const link = await withTransaction(deps.db, async (client) => {
        const linked = await linkUser(client, settings.issuer, subject, userId);
        if (linked.created) {
          const details = { issuer: settings.issuer, subject };
          await recordEvent(client, 'identity.link', { actorId: userId, details }, contextOf(request));
        }
        return linked;
      });
      if (link.userId !== userId)
        throw new ValidationError({ provider_token: 'this identity is linked to another account' });
      if (link.created) reply.code(201);
      return { identity: { issuer: settings.issuer, subject } };
    },
  );
}
