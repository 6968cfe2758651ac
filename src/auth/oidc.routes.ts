// /v1/users/identities: the one way an external provider's identity becomes linked to an
// existing account, and how its owner sees and removes the links. A link is made by a request
// that proves control of both: it is authenticated with the account's own credential (a book
// token or a JWT of ours, never an API key or a provider token) of an activated account, and
// carries a token of the provider, whose subject is then linked to the account.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { requireAuthenticated } from '../accounts/guards.ts';
import { deleteLink, linkUser, selectLinksOfUser } from '../accounts/identities.sql.ts';
import type { Identity } from '../accounts/user.ts';
import { contextOf, recordEvent } from '../audit/audit.ts';
import type { Config } from '../config.ts';
import { type Db, withTransaction } from '../platform/db.ts';
import {
  InactiveAccountError,
  InvalidAuthenticationTokenError,
  NotFoundError,
  NotPermittedError,
  ValidationError,
} from '../platform/errors.ts';
import { bookBody, type DecodedBody } from '../platform/json-body.ts';
import type { Logger } from '../platform/logger.ts';
import { BEARER_REQUIRED, errors, response } from '../platform/schemas.ts';
import { Validator } from '../platform/validator.ts';
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

const LinkedIdentity = Type.Object(
  {
    issuer: Type.String({ examples: ['https://id.example.com'] }),
    subject: Type.String({ examples: ['248289761001'] }),
  },
  { additionalProperties: false },
);

const IdentityEnvelope = Type.Object({ identity: LinkedIdentity }, { additionalProperties: false });

const IdentityList = Type.Object(
  {
    identities: Type.Array(
      Type.Object(
        { ...LinkedIdentity.properties, created_at: Type.String({ format: 'date-time' }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

const SubjectParams = Type.Object({
  subject: Type.String({ description: 'the linked subject, URL-encoded', examples: ['248289761001'] }),
});

const Message = Type.Object({ message: Type.String() }, { additionalProperties: false });

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

// A link is made from an activated account only: one registered with someone else's e-mail
// must not gain an identity that outlives its owner's activation and password reset.
function requireActivatedAccountCredential(verifier: OidcVerifier) {
  const requireCredential = requireAccountCredential(verifier);
  return async (request: FastifyRequest): Promise<void> => {
    await requireCredential(request);
    if (!request.identity?.activated) throw new InactiveAccountError();
  };
}

// Only with -auth-methods oidc.
export async function identityRoutes(
  app: FastifyInstance,
  deps: { config: Config; db: Db; logger: Logger },
): Promise<void> {
  if (!deps.config.auth.methods.includes('oidc')) return;
  const verifier = oidcVerifier(deps.config.auth.oidc, deps.logger);
  linkRoute(app, deps, verifier);
  listAndUnlinkRoutes(app, deps, verifier);
}

function linkRoute(app: FastifyInstance, deps: { config: Config; db: Db }, verifier: OidcVerifier): void {
  const settings = deps.config.auth.oidc;
  app.post(
    IDENTITIES_PATH,
    {
      onRequest: requireActivatedAccountCredential(verifier),
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
          ...errors(400, 401, 403, 422, 500),
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

// The owner sees its links and removes any of them, with the same credentials a link needs
// (activated or not: whoever registered the e-mail first, its owner can clean up).
function listAndUnlinkRoutes(
  app: FastifyInstance,
  deps: { config: Config; db: Db },
  verifier: OidcVerifier,
): void {
  const { issuer } = deps.config.auth.oidc;
  app.get(
    IDENTITIES_PATH,
    {
      onRequest: requireAccountCredential(verifier),
      schema: {
        operationId: 'listIdentities',
        summary: "The provider identities linked to the caller's account",
        tags: ['users'],
        security: BEARER_REQUIRED,
        response: { 200: response(IdentityList, 'The linked identities'), ...errors(401, 403, 500) },
      },
    },
    async (request) => {
      const links = await selectLinksOfUser(deps.db, (request.identity as Identity).id);
      return {
        identities: links.map((link) => ({
          issuer: link.issuer,
          subject: link.subject,
          created_at: link.createdAt.toISOString(),
        })),
      };
    },
  );

  app.delete(
    `${IDENTITIES_PATH}/:subject`,
    {
      onRequest: requireAccountCredential(verifier),
      schema: {
        operationId: 'unlinkIdentity',
        summary:
          "Remove a provider identity from the caller's account: its tokens act for nobody from then on",
        tags: ['users'],
        security: BEARER_REQUIRED,
        params: SubjectParams,
        response: { 200: response(Message, 'Unlinked'), ...errors(401, 403, 404, 500) },
      },
    },
    async (request) => {
      const { subject } = request.params as { subject: string };
      const userId = (request.identity as Identity).id;
      await withTransaction(deps.db, async (client) => {
        if (!(await deleteLink(client, issuer, subject, userId))) throw new NotFoundError();
        const details = { issuer, subject };
        await recordEvent(client, 'identity.unlink', { actorId: userId, details }, contextOf(request));
      });
      return { message: 'identity successfully unlinked' };
    },
  );
}
