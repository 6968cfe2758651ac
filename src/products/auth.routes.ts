// /api/v1/auth and /api/v1/api-keys: seed 002's register and login (JWT), and ours:
// log out everywhere, API keys.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import * as accounts from '../accounts/accounts.ts';
import { requireAuthenticated } from '../accounts/auth.ts';
import { isValidEmail, type User } from '../accounts/user.ts';
import { contextOf } from '../audit/audit.ts';
import { API_KEY_SCOPES, type ApiKey, createApiKey, listApiKeys, revokeApiKey } from '../auth/apikey.ts';
import type { Jwts } from '../auth/jwt.ts';
import { IGNORES_CREDENTIALS } from '../auth/registry.ts';
import type { Db } from '../platform/db.ts';
import { InvalidCredentialsError, NotPermittedError } from '../platform/errors.ts';
import { decodeGoJson } from './go-json.ts';
import { checkNoNul, RuleViolationError } from './product.ts';
import { ApiError, AUTH_ERRORS, readInt64Param } from './products.routes.ts';

const CREDENTIALS = { email: 'string', password: 'string' } as const;
const REGISTER_REQUEST = { name: 'RegisterRequest', fields: CREDENTIALS } as const;
const LOGIN_REQUEST = { name: 'LoginRequest', fields: CREDENTIALS } as const;
const CREATE_API_KEY_REQUEST = {
  name: 'CreateAPIKeyRequest',
  fields: { name: 'string', scopes: '[]string', expires_at: 'string' },
} as const;

const AuthResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  user: Type.Object({
    id: Type.Integer(),
    email: Type.String(),
    role: Type.String(),
    created_at: Type.String({ format: 'date-time' }),
  }),
});

const ApiKeySchema = Type.Object({
  id: Type.Integer(),
  name: Type.String(),
  prefix: Type.String(),
  scopes: Type.Array(Type.String()),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
});
const NewApiKey = Type.Intersect([ApiKeySchema, Type.Object({ key: Type.String() })]);
const ApiKeyList = Type.Object({ data: Type.Array(ApiKeySchema) });
const IdParams = Type.Object({ id: Type.String() });

export const AUTH_PATHS = [
  '/auth/register',
  '/auth/login',
  '/auth/logout-all',
  '/api-keys',
  '/api-keys/:id',
] as const;

const MAX_PASSWORD_BYTES = 72;

function toApiKeyJson(key: ApiKey) {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    scopes: key.scopes,
    expires_at: key.expiresAt?.toISOString() ?? null,
    last_used_at: key.lastUsedAt?.toISOString() ?? null,
    created_at: key.createdAt.toISOString(),
  };
}

// Register and login are the seed's; both normalise the e-mail the same way.
function credentials(input: { email?: string | null; password?: string | null }) {
  checkNoNul(input);
  return { email: (input.email ?? '').trim().toLowerCase(), password: input.password ?? '' };
}

function validateRegistration(input: { email: string; password: string }): void {
  // The seed asks for an "@"; the book's stricter pattern keeps the account usable on /v1.
  if (!isValidEmail(input.email))
    throw new RuleViolationError('validation: a valid email address is required');
  if (Buffer.byteLength(input.password) < 8)
    throw new RuleViolationError('validation: password must be at least 8 characters long');
  // bcrypt reads no further; the book refuses longer passwords too.
  if (Buffer.byteLength(input.password) > MAX_PASSWORD_BYTES)
    throw new RuleViolationError('validation: password must not be more than 72 bytes long');
}

// API keys cannot make API keys or end sessions: a leaked key must not outgrow its scopes.
async function requireFullCredential(request: FastifyRequest): Promise<void> {
  await requireAuthenticated(request);
  if (request.identity?.scopes) throw new NotPermittedError();
}

export function authRoutes(api: FastifyInstance, deps: { db: Db; jwts: Jwts }): void {
  const { db, jwts } = deps;
  const body = (request: FastifyRequest) => request.body as Buffer | undefined;
  const authResponse = async (user: User) => ({
    access_token: await jwts.issue(user),
    token_type: 'Bearer' as const,
    user: { id: user.id, email: user.email, role: user.role, created_at: user.createdAt.toISOString() },
  });

  api.post(
    '/auth/register',
    {
      config: IGNORES_CREDENTIALS,
      schema: { response: { 201: AuthResponse, 400: ApiError, 422: ApiError, 429: ApiError, 500: ApiError } },
    },
    async (request, reply) => {
      const input = credentials(decodeGoJson(body(request), REGISTER_REQUEST, true));
      validateRegistration(input);
      let user: User;
      try {
        user = await accounts.registerUserWithoutMail(db, input, contextOf(request));
      } catch (err) {
        if (err instanceof accounts.EmailTakenError)
          throw new RuleViolationError('validation: a user with this email already exists');
        throw err;
      }
      reply.code(201);
      return authResponse(user);
    },
  );

  api.post(
    '/auth/login',
    {
      config: IGNORES_CREDENTIALS,
      schema: {
        response: {
          200: AuthResponse,
          400: ApiError,
          401: ApiError,
          422: ApiError,
          429: ApiError,
          500: ApiError,
        },
      },
    },
    async (request) => {
      const input = credentials(decodeGoJson(body(request), LOGIN_REQUEST, true));
      // No bcrypt hash can match it, and refusing it early says nothing about the account.
      if (Buffer.byteLength(input.password) > MAX_PASSWORD_BYTES) throw new InvalidCredentialsError();
      return authResponse(await accounts.logIn(db, input.email, input.password, contextOf(request)));
    },
  );

  api.post(
    '/auth/logout-all',
    { onRequest: requireFullCredential, schema: { response: { 204: Type.Null(), ...AUTH_ERRORS } } },
    async (request, reply) => {
      await accounts.endSessions(db, (request.identity as User).id, contextOf(request));
      reply.code(204).send();
      return reply;
    },
  );

  api.post(
    '/api-keys',
    {
      onRequest: requireFullCredential,
      schema: { response: { 201: NewApiKey, 400: ApiError, 422: ApiError, ...AUTH_ERRORS } },
    },
    async (request, reply) => {
      const input = decodeGoJson(body(request), CREATE_API_KEY_REQUEST, false);
      checkNoNul({
        name: input.name,
        ...Object.fromEntries((input.scopes ?? []).map((s, i) => [`scopes[${i}]`, s])),
      });
      const name = (input.name ?? '').trim();
      if (name === '' || name.length > 200)
        throw new RuleViolationError('validation: api key name must be 1 to 200 characters long');
      const scopes = input.scopes ?? [];
      if (scopes.length === 0 || !scopes.every((s) => (API_KEY_SCOPES as readonly string[]).includes(s)))
        throw new RuleViolationError(
          `validation: scopes must be a non-empty list of: ${API_KEY_SCOPES.join(', ')}`,
        );
      let expiresAt: Date | null = null;
      if (input.expires_at != null) {
        expiresAt = new Date(input.expires_at);
        const rfc3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
        if (
          !rfc3339.test(input.expires_at) ||
          Number.isNaN(expiresAt.getTime()) ||
          expiresAt.getTime() <= Date.now()
        )
          throw new RuleViolationError('validation: expires_at must be an RFC 3339 time in the future');
      }
      const { key, plaintext } = await createApiKey(
        db,
        (request.identity as User).id,
        {
          name,
          scopes,
          expiresAt,
        },
        contextOf(request),
      );
      reply.code(201);
      return { ...toApiKeyJson(key), key: plaintext };
    },
  );

  api.get(
    '/api-keys',
    { onRequest: requireFullCredential, schema: { response: { 200: ApiKeyList, ...AUTH_ERRORS } } },
    async (request) => ({ data: (await listApiKeys(db, (request.identity as User).id)).map(toApiKeyJson) }),
  );

  api.delete(
    '/api-keys/:id',
    {
      onRequest: requireFullCredential,
      schema: {
        params: IdParams,
        response: { 204: Type.Null(), 400: ApiError, 404: ApiError, ...AUTH_ERRORS },
      },
    },
    async (request, reply) => {
      const id = readInt64Param(request, 'invalid api key id');
      if (!(await revokeApiKey(db, (request.identity as User).id, id, contextOf(request))))
        throw new ApiKeyNotFoundError(id);
      reply.code(204).send();
      return reply;
    },
  );
}

export class ApiKeyNotFoundError extends Error {
  constructor(id: string) {
    super(`not_found: api key with id ${id} does not exist`);
  }
}
