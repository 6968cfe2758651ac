// /v1/users and /v1/tokens routes. Each route's schema is its whole wire contract (see
// platform/schemas.ts); none needs a token, but a bad one is refused as on every route.
import type { FastifyInstance } from 'fastify';
import type { TObject } from 'typebox';
import { Type } from 'typebox';
import { contextOf } from '../audit/audit.ts';
import type { DecodedBody } from '../platform/json-body.ts';
import { BEARER_OPTIONAL, errors, MessageEnvelope, response } from '../platform/schemas.ts';
import * as accounts from './accounts.ts';
import {
  CredentialsBody,
  EmailBody,
  PasswordResetBody,
  RegisterUserBody,
  TokenBody,
  toUserJson,
  UserJsonSchema,
} from './user.ts';

const UserEnvelope = Type.Object({ user: UserJsonSchema }, { additionalProperties: false });
const TokenEnvelope = Type.Object(
  {
    authentication_token: Type.Object(
      {
        token: Type.String({
          description: '26 characters of base32',
          examples: ['IEYFSVVZH3XNQD2KPWDK4YYMCE'],
        }),
        expiry: Type.String({ format: 'date-time' }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const route = (operationId: string, summary: string, tag: string) => ({
  operationId,
  summary,
  tags: [tag],
  security: BEARER_OPTIONAL,
});

export async function accountRoutes(app: FastifyInstance, deps: accounts.AccountDeps): Promise<void> {
  userRoutes(app, deps);
  tokenRoutes(app, deps);
}

// The body as the validator decoded it (platform/request.ts).
const body = <T extends TObject>(request: { body: unknown }, _schema: T) => request.body as DecodedBody<T>;

// /v1/users: register, activate, reset a password.
function userRoutes(app: FastifyInstance, deps: accounts.AccountDeps): void {
  app.post(
    '/v1/users',
    {
      schema: {
        ...route('registerUser', 'Register a user; the welcome mail carries an activation token', 'users'),
        body: RegisterUserBody,
        response: { 202: response(UserEnvelope, 'The user, not yet activated'), ...errors(400, 422, 500) },
      },
    },
    async (request, reply) => {
      const user = await accounts.registerUser(deps, body(request, RegisterUserBody), contextOf(request));
      reply.code(202);
      return { user: toUserJson(user) };
    },
  );

  app.put(
    '/v1/users/activated',
    {
      schema: {
        ...route('activateUser', 'Activate a user with the token from the welcome mail', 'users'),
        body: TokenBody,
        response: { 200: response(UserEnvelope, 'The activated user'), ...errors(400, 409, 422, 500) },
      },
    },
    async (request) => {
      const user = await accounts.activateUser(deps, body(request, TokenBody));
      return { user: toUserJson(user) };
    },
  );

  app.put(
    '/v1/users/password',
    {
      schema: {
        ...route('resetPassword', 'Set a new password with a password-reset token', 'users'),
        body: PasswordResetBody,
        response: {
          200: response(MessageEnvelope, 'your password was successfully reset'),
          ...errors(400, 409, 422, 500),
        },
      },
    },
    async (request) => {
      await accounts.resetPassword(deps, body(request, PasswordResetBody));
      return { message: 'your password was successfully reset' };
    },
  );
}

// /v1/tokens: log in (an authentication token), or have an activation or reset token mailed.
function tokenRoutes(app: FastifyInstance, deps: accounts.AccountDeps): void {
  app.post(
    '/v1/tokens/authentication',
    {
      schema: {
        ...route('createAuthenticationToken', 'Log in: a bearer token valid 24 hours', 'tokens'),
        body: CredentialsBody,
        response: { 201: response(TokenEnvelope, 'The new token'), ...errors(400, 422, 500) },
      },
    },
    async (request, reply) => {
      const token = await accounts.createAuthenticationToken(
        deps,
        body(request, CredentialsBody),
        contextOf(request),
      );
      reply.code(201);
      return { authentication_token: { token: token.plaintext, expiry: token.expiry.toISOString() } };
    },
  );

  app.post(
    '/v1/tokens/activation',
    {
      schema: {
        ...route('requestActivationToken', 'Mail a new activation token (valid 3 days)', 'tokens'),
        body: EmailBody,
        response: {
          202: response(MessageEnvelope, 'an email will be sent to you containing activation instructions'),
          ...errors(400, 422, 500),
        },
      },
    },
    async (request, reply) => {
      await accounts.requestActivationToken(deps, body(request, EmailBody));
      reply.code(202);
      return { message: 'an email will be sent to you containing activation instructions' };
    },
  );

  app.post(
    '/v1/tokens/password-reset',
    {
      schema: {
        ...route('requestPasswordReset', 'Mail a password-reset token (valid 45 minutes)', 'tokens'),
        body: EmailBody,
        response: {
          202: response(
            MessageEnvelope,
            'an email will be sent to you containing password reset instructions',
          ),
          ...errors(400, 422, 500),
        },
      },
    },
    async (request, reply) => {
      await accounts.requestPasswordReset(deps, body(request, EmailBody));
      reply.code(202);
      return { message: 'an email will be sent to you containing password reset instructions' };
    },
  );
}
