// /api/v1/auth and /api/v1/api-keys: seed 002's register and login (JWT), and ours:
// log out everywhere, API keys.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Static, Type } from 'typebox';
import * as accounts from '../accounts/accounts.ts';
import { requireAuthenticated } from '../accounts/guards.ts';
import { isValidEmail, PASSWORD_BYTES, type User } from '../accounts/user.ts';
import { contextOf } from '../audit/audit.ts';
import { API_KEY_SCOPES, type ApiKey, createApiKey, listApiKeys, revokeApiKey } from '../auth/apikey.ts';
import type { Jwts } from '../auth/jwt.ts';
import { IGNORES_CREDENTIALS } from '../auth/registry.ts';
import type { Db } from '../platform/db.ts';
import { BadRequestError, InvalidCredentialsError, NotPermittedError } from '../platform/errors.ts';
import { goStruct } from '../platform/go-json.ts';
import { paramsOf, queryOf, withPartReader } from '../platform/request.ts';
import { BEARER_REQUIRED, NO_CREDENTIALS, response } from '../platform/schemas.ts';
import { checkNoNul, RuleViolationError } from '../products/product.ts';
import { int64Params } from './products.routes.ts';
import { apiErrors, NoContent } from './responses.ts';

// The seed's auth handlers pass encoding/json's text on (`detailed`).
const CREDENTIALS = { email: Type.String(), password: Type.String() };
const CREDENTIALS_EXAMPLE = { email: 'bob@example.com', password: 'pa55word' };
const RegisterRequest = goStruct('RegisterRequest', CREDENTIALS, {
  example: CREDENTIALS_EXAMPLE,
  detailed: true,
});
const LoginRequest = goStruct('LoginRequest', CREDENTIALS, { example: CREDENTIALS_EXAMPLE, detailed: true });
const CreateApiKeyRequest = goStruct(
  'CreateAPIKeyRequest',
  { name: Type.String(), scopes: Type.Array(Type.String()), expires_at: Type.String() },
  { example: { name: 'ci', scopes: ['products:read'], expires_at: '2027-01-01T00:00:00Z' } },
);

const AuthResponse = Type.Object(
  {
    access_token: Type.String({ description: 'a JWT, valid -jwt-ttl (24 h)' }),
    token_type: Type.Literal('Bearer'),
    user: Type.Object(
      {
        id: Type.Integer(),
        email: Type.String(),
        role: Type.String({ examples: ['user', 'admin'] }),
        created_at: Type.String({ format: 'date-time' }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const apiKeyFields = {
  id: Type.Integer(),
  name: Type.String(),
  prefix: Type.String({ description: 'the first characters of the key, to recognise it' }),
  scopes: Type.Array(Type.String()),
  expires_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  last_used_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
};
const ApiKeySchema = Type.Object(apiKeyFields, { additionalProperties: false });
const NewApiKey = Type.Object(
  { ...apiKeyFields, key: Type.String({ description: 'the key itself, shown this once' }) },
  { additionalProperties: false },
);
const ApiKeyList = Type.Object({ data: Type.Array(ApiKeySchema) }, { additionalProperties: false });

const TAGS = ['auth'];

const ApiKeyIdParams = int64Params('invalid api key id');

// Absent is false; anything but one "true" or "false" (a repeated key too) is refused rather
// than guessed.
const LogoutAllQuery = withPartReader(
  Type.Object({
    revoke_api_keys: Type.Optional(
      Type.Boolean({
        default: false,
        description: "true: revoke the caller's API keys as well (a password reset always does)",
      }),
    ),
  }),
  (query) => {
    const value = query.revoke_api_keys;
    if (value === undefined || value === 'false') return { revokeApiKeys: false };
    if (value === 'true') return { revokeApiKeys: true };
    throw new BadRequestError('invalid revoke_api_keys: must be true or false');
  },
);

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
  const bytes = Buffer.byteLength(input.password);
  if (bytes < PASSWORD_BYTES.min)
    throw new RuleViolationError(
      `validation: password must be at least ${PASSWORD_BYTES.min} characters long`,
    );
  // bcrypt reads no further; the book refuses longer passwords too.
  if (bytes > PASSWORD_BYTES.max)
    throw new RuleViolationError(
      `validation: password must not be more than ${PASSWORD_BYTES.max} bytes long`,
    );
}

// API keys cannot make API keys or end sessions: a leaked key must not outgrow its scopes.
async function requireFullCredential(request: FastifyRequest): Promise<void> {
  await requireAuthenticated(request);
  if (request.identity?.scopes) throw new NotPermittedError();
}

// The body of POST /api-keys, checked: the seed's valid API key has a name, known scopes
// and, if any, an expiry in the future.
// Date accepts February 30th and moves it to March 2nd; a day that does not exist is refused.
function isCalendarDay(yyyyMmDd: string): boolean {
  const [year, month, day] = yyyyMmDd.split('-').map(Number) as [number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

function readNewApiKey(request: FastifyRequest) {
  const input = request.body as Static<typeof CreateApiKeyRequest>;
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
      !isCalendarDay(input.expires_at.slice(0, 10)) ||
      Number.isNaN(expiresAt.getTime()) ||
      expiresAt.getTime() <= Date.now()
    )
      throw new RuleViolationError('validation: expires_at must be an RFC 3339 time in the future');
  }
  return { name, scopes, expiresAt };
}

export function authRoutes(api: FastifyInstance, deps: { db: Db; jwts: Jwts }): void {
  passwordRoutes(api, deps);
  logoutAllRoute(api, deps.db);
  apiKeyRoutes(api, deps.db);
}

// Register and log in with e-mail and password, answered with a JWT.
function passwordRoutes(api: FastifyInstance, { db, jwts }: { db: Db; jwts: Jwts }): void {
  const authResponse = async (user: User) => ({
    access_token: await jwts.issue(user),
    token_type: 'Bearer' as const,
    user: { id: user.id, email: user.email, role: user.role, created_at: user.createdAt.toISOString() },
  });

  api.post(
    '/auth/register',
    {
      config: IGNORES_CREDENTIALS,
      schema: {
        operationId: 'registerWithJwt',
        summary: 'Register with e-mail and password; answers with a JWT',
        tags: TAGS,
        security: NO_CREDENTIALS,
        body: RegisterRequest,
        response: { 201: response(AuthResponse, 'The new user and a JWT'), ...apiErrors(400, 413, 422, 500) },
      },
    },
    async (request, reply) => {
      const input = credentials(request.body as Static<typeof RegisterRequest>);
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
        operationId: 'loginWithJwt',
        summary: 'Log in with e-mail and password; answers with a JWT',
        tags: TAGS,
        security: NO_CREDENTIALS,
        body: LoginRequest,
        response: {
          200: response(AuthResponse, 'The user and a JWT'),
          ...apiErrors(400, 401, 413, 422, 500),
        },
      },
    },
    async (request) => {
      const input = credentials(request.body as Static<typeof LoginRequest>);
      // No bcrypt hash can match it, and refusing it early says nothing about the account.
      if (Buffer.byteLength(input.password) > PASSWORD_BYTES.max) throw new InvalidCredentialsError();
      return authResponse(await accounts.logIn(db, input.email, input.password, contextOf(request)));
    },
  );
}

function logoutAllRoute(api: FastifyInstance, db: Db): void {
  api.post(
    '/auth/logout-all',
    {
      onRequest: requireFullCredential,
      schema: {
        operationId: 'logoutEverywhere',
        summary:
          'End every session of the caller: earlier JWTs and book tokens (and with ?revoke_api_keys=true its API keys) stop working within 1 s',
        tags: TAGS,
        security: BEARER_REQUIRED,
        querystring: LogoutAllQuery,
        response: { 204: NoContent('Logged out everywhere'), ...apiErrors(400, 401, 403, 500) },
      },
    },
    async (request, reply) => {
      const options = queryOf(request, LogoutAllQuery);
      await accounts.endSessions(db, (request.identity as User).id, contextOf(request), options);
      reply.code(204).send();
      return reply;
    },
  );
}

function apiKeyRoutes(api: FastifyInstance, db: Db): void {
  api.post(
    '/api-keys',
    {
      onRequest: requireFullCredential,
      schema: {
        operationId: 'createApiKey',
        summary: 'Create an API key (shown once) with a name, scopes and an optional expiry',
        tags: TAGS,
        security: BEARER_REQUIRED,
        body: CreateApiKeyRequest,
        response: {
          201: response(NewApiKey, 'The key, shown this once'),
          ...apiErrors(400, 401, 403, 413, 422, 500),
        },
      },
    },
    async (request, reply) => {
      const { name, scopes, expiresAt } = readNewApiKey(request);
      const { key, plaintext } = await createApiKey(
        db,
        request.identity as User,
        { name, scopes, expiresAt },
        contextOf(request),
      );
      reply.code(201);
      return { ...toApiKeyJson(key), key: plaintext };
    },
  );

  api.get(
    '/api-keys',
    {
      onRequest: requireFullCredential,
      schema: {
        operationId: 'listApiKeys',
        summary: "The caller's API keys (never the keys themselves)",
        tags: TAGS,
        security: BEARER_REQUIRED,
        response: { 200: response(ApiKeyList, 'The API keys'), ...apiErrors(401, 403, 500) },
      },
    },
    async (request) => ({ data: (await listApiKeys(db, (request.identity as User).id)).map(toApiKeyJson) }),
  );

  api.delete(
    '/api-keys/:id',
    {
      onRequest: requireFullCredential,
      schema: {
        operationId: 'revokeApiKey',
        summary: 'Revoke an API key: refused everywhere within 1 s',
        tags: TAGS,
        security: BEARER_REQUIRED,
        params: ApiKeyIdParams,
        response: { 204: NoContent('Revoked'), ...apiErrors(400, 401, 403, 404, 500) },
      },
    },
    async (request, reply) => {
      const { id } = paramsOf(request, ApiKeyIdParams);
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
