// /v1/users and /v1/tokens routes.
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { contextOf } from '../audit/audit.ts';
import { decodeJsonBody } from '../platform/json-body.ts';
import * as accounts from './accounts.ts';
import {
  CREDENTIALS_INPUT,
  EMAIL_INPUT,
  PASSWORD_RESET_INPUT,
  REGISTER_USER_INPUT,
  TOKEN_INPUT,
  toUserJson,
} from './user.ts';

const UserEnvelope = Type.Object({
  user: Type.Object({
    id: Type.Integer(),
    created_at: Type.String(),
    name: Type.String(),
    email: Type.String(),
    activated: Type.Boolean(),
  }),
});
const TokenEnvelope = Type.Object({
  authentication_token: Type.Object({ token: Type.String(), expiry: Type.String() }),
});
const MessageEnvelope = Type.Object({ message: Type.String() });

export const ACCOUNT_PATHS = [
  '/v1/users',
  '/v1/users/activated',
  '/v1/users/password',
  '/v1/tokens/authentication',
  '/v1/tokens/activation',
  '/v1/tokens/password-reset',
] as const;

export function accountRoutes(app: FastifyInstance, deps: accounts.AccountDeps): void {
  const body = (request: { body: unknown }) => request.body as Buffer | undefined;

  app.post('/v1/users', { schema: { response: { 202: UserEnvelope } } }, async (request, reply) => {
    const user = await accounts.registerUser(
      deps,
      decodeJsonBody(body(request), REGISTER_USER_INPUT),
      contextOf(request),
    );
    reply.code(202);
    return { user: toUserJson(user) };
  });

  app.put('/v1/users/activated', { schema: { response: { 200: UserEnvelope } } }, async (request) => {
    const user = await accounts.activateUser(deps, decodeJsonBody(body(request), TOKEN_INPUT));
    return { user: toUserJson(user) };
  });

  app.put('/v1/users/password', { schema: { response: { 200: MessageEnvelope } } }, async (request) => {
    await accounts.resetPassword(deps, decodeJsonBody(body(request), PASSWORD_RESET_INPUT));
    return { message: 'your password was successfully reset' };
  });

  app.post(
    '/v1/tokens/authentication',
    { schema: { response: { 201: TokenEnvelope } } },
    async (request, reply) => {
      const token = await accounts.createAuthenticationToken(
        deps,
        decodeJsonBody(body(request), CREDENTIALS_INPUT),
        contextOf(request),
      );
      reply.code(201);
      return { authentication_token: { token: token.plaintext, expiry: token.expiry.toISOString() } };
    },
  );

  app.post(
    '/v1/tokens/activation',
    { schema: { response: { 202: MessageEnvelope } } },
    async (request, reply) => {
      await accounts.requestActivationToken(deps, decodeJsonBody(body(request), EMAIL_INPUT));
      reply.code(202);
      return { message: 'an email will be sent to you containing activation instructions' };
    },
  );

  app.post(
    '/v1/tokens/password-reset',
    { schema: { response: { 202: MessageEnvelope } } },
    async (request, reply) => {
      await accounts.requestPasswordReset(deps, decodeJsonBody(body(request), EMAIL_INPUT));
      reply.code(202);
      return { message: 'an email will be sent to you containing password reset instructions' };
    },
  );
}
