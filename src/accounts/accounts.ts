// Account use cases: registration, activation, tokens, password reset, authentication.
import type { PoolClient } from 'pg';
import { type AuditContext, recordEvent } from '../audit/audit.ts';
import { type Db, type Queryable, withTransaction } from '../platform/db.ts';
import {
  InvalidAuthenticationTokenError,
  InvalidCredentialsError,
  NotFoundError,
  ValidationError,
} from '../platform/errors.ts';
import { inTransaction, type Jobs, withTraceContext } from '../platform/jobs.ts';
import { Validator } from '../platform/validator.ts';
import { deleteApiKeysOfUser } from './api-keys.sql.ts';
import type { EmailTemplate } from './emails.ts';
import { deleteLinksOfUser } from './identities.sql.ts';
import type { IdentityCache } from './identity-cache.ts';
import { forgetAccountFailures } from './login-throttle.sql.ts';
import { beginLoginAttempt } from './login-throttle.ts';
import { hashPassword, passwordMatches, spendPasswordCheckTime } from './password.ts';
import { grantPermissions } from './permissions.sql.ts';
import { deleteTokensForUser, insertSessionToken, insertToken } from './tokens.sql.ts';
import { generateToken, hashToken, SCOPES, type Token } from './tokens.ts';
import {
  checkEmail,
  checkPasswordPlaintext,
  checkTokenPlaintext,
  type Identity,
  type Role,
  type User,
  validateNewUser,
} from './user.ts';
import * as users from './users.sql.ts';

export type AccountDeps = Readonly<{ db: Db; jobs: Jobs }>;

export const EMAIL_QUEUE = 'send-email';
export type EmailJob = Readonly<{ template: EmailTemplate; to: string; userId: number; token: string }>;

function enqueueEmail(jobs: Jobs, client: PoolClient, job: EmailJob): Promise<string | null> {
  return jobs.send(EMAIL_QUEUE, withTraceContext(job), inTransaction(client));
}

export async function registerUser(
  { db, jobs }: AccountDeps,
  input: { name?: string; email?: string; password?: string },
  context: AuditContext = {},
): Promise<User> {
  validateNewUser(input);
  const passwordHash = await hashPassword(input.password as string);
  try {
    return await withTransaction(db, async (client) => {
      const user = await users.insertUser(client, {
        name: input.name as string,
        email: input.email as string,
        passwordHash,
        activated: false,
      });
      await grantPermissions(client, user.id, ['movies:read']);
      await recordEvent(client, 'user.register', { actorId: user.id, email: user.email }, context);
      const token = generateToken(user.id, SCOPES.activation);
      await insertToken(client, token);
      await enqueueEmail(jobs, client, {
        template: 'user_welcome',
        to: user.email,
        userId: user.id,
        token: token.plaintext,
      });
      return user;
    });
  } catch (err) {
    if (err instanceof users.DuplicateEmailError) {
      throw new ValidationError({ email: 'a user with this email address already exists' });
    }
    throw err;
  }
}

// Finds the user holding a valid token of `scope`, or fails with `fields` as a 422.
async function userForToken(db: Db, plaintext: string, scope: string, message: string): Promise<Identity> {
  try {
    return (await users.selectIdentityForToken(db, hashToken(plaintext), scope)).identity;
  } catch (err) {
    if (err instanceof NotFoundError) throw new ValidationError({ token: message });
    throw err;
  }
}

export async function activateUser({ db }: AccountDeps, input: { token?: string }): Promise<User> {
  const v = new Validator();
  checkTokenPlaintext(v, input.token ?? '');
  v.assertValid();
  const user = await userForToken(
    db,
    input.token as string,
    SCOPES.activation.name,
    'invalid or expired activation token',
  );
  return withTransaction(db, async (client) => {
    const updated = await users.updateUser(client, { ...user, activated: true });
    await deleteTokensForUser(client, SCOPES.activation.name, user.id);
    return updated;
  });
}

export async function createAuthenticationToken(
  { db }: AccountDeps,
  input: { email?: string; password?: string },
  context: AuditContext = {},
): Promise<Token> {
  const v = new Validator();
  checkEmail(v, input.email ?? '');
  checkPasswordPlaintext(v, input.password ?? '');
  v.assertValid();
  const user = await logIn(db, input.email as string, input.password as string, context);
  const token = generateToken(user.id, SCOPES.authentication);
  // A reset or a logout everywhere that committed during the password check ended it.
  if (!(await insertSessionToken(db, token, user.tokenGeneration))) throw new InvalidCredentialsError();
  return token;
}

// The user with this e-mail and password, or InvalidCredentialsError. An unknown e-mail
// costs a bcrypt comparison too, so timing does not tell which e-mails exist.
export async function verifyCredentials(db: Db, email: string, password: string): Promise<User> {
  let user: User;
  try {
    user = await users.selectUserByEmail(db, email);
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
    await spendPasswordCheckTime(password);
    throw new InvalidCredentialsError();
  }
  if (!(await passwordMatches(password, user.passwordHash))) throw new InvalidCredentialsError();
  return user;
}

// Longer than any e-mail PostgreSQL could index in users: no account has one, and the
// throttle's and the audit trail's indexes could not hold it either.
const MAX_LOGIN_EMAIL_BYTES = 2048;

// A login through either API: throttled (counted before the password is checked), checked,
// and recorded in the audit trail.
export async function logIn(db: Db, email: string, password: string, context: AuditContext): Promise<User> {
  if (Buffer.byteLength(email) > MAX_LOGIN_EMAIL_BYTES) throw new InvalidCredentialsError();
  const attempt = await beginLoginAttempt(db, email, context.address);
  let user: User;
  try {
    user = await verifyCredentials(db, email, password);
  } catch (err) {
    if (err instanceof InvalidCredentialsError) {
      await attempt.failed().catch(() => {});
      await recordEvent(db, 'login.failure', { email }, context);
    } else await attempt.abandoned().catch(() => {});
    throw err;
  }
  await attempt.succeeded();
  await recordEvent(db, 'login.success', { actorId: user.id, email: user.email }, context);
  return user;
}

export class EmailTakenError extends Error {}

// A user registered through the products API (seed 002): no name and no activation mail
// there, so the name is the e-mail's local part and the account starts unactivated with the
// book's movies:read; the book's activation flow (POST /v1/tokens/activation) still applies
// before it may use /v1/movies. The caller validated the e-mail and password. `alongside`
// runs in the same transaction (an external identity's link).
export async function registerUserWithoutMail(
  db: Db,
  input: { email: string; password: string },
  context: AuditContext = {},
  alongside?: (client: PoolClient, user: User) => Promise<void>,
): Promise<User> {
  const passwordHash = await hashPassword(input.password);
  try {
    return await withTransaction(db, async (client) => {
      const user = await users.insertUser(client, {
        name: input.email.slice(0, input.email.lastIndexOf('@')),
        email: input.email,
        passwordHash,
        activated: false,
      });
      await grantPermissions(client, user.id, ['movies:read']);
      await recordEvent(client, 'user.register', { actorId: user.id, email: user.email }, context);
      await alongside?.(client, user);
      return user;
    });
  } catch (err) {
    if (err instanceof users.DuplicateEmailError) throw new EmailTakenError();
    throw err;
  }
}

// Revokes every API key of the user inside the caller's transaction (a password reset, a
// log-out that asks for it); every instance forgets them once it commits. The number revoked.
async function revokeAllApiKeys(client: Queryable, userId: number): Promise<number> {
  const revoked = await deleteApiKeysOfUser(client, userId);
  if (revoked > 0) await users.notifyIdentityChanged(client, userId);
  return revoked;
}

// Ends every session of the user: its JWTs (through the token generation) and the book's
// authentication tokens, on every instance; its API keys too when asked (they are not
// sessions: a log-out from a shared machine must not break the user's CI).
export async function endSessions(
  db: Db,
  userId: number,
  context: AuditContext,
  options: { revokeApiKeys: boolean } = { revokeApiKeys: false },
): Promise<void> {
  await withTransaction(db, async (client) => {
    await users.endTokenGeneration(client, userId);
    await deleteTokensForUser(client, SCOPES.authentication.name, userId);
    const details = options.revokeApiKeys
      ? { api_keys_revoked: await revokeAllApiKeys(client, userId) }
      : undefined;
    await recordEvent(client, 'logout.all', { actorId: userId, details }, context);
  });
}

// An operator's change (the command line): no actor, no address.
export async function setRole(db: Db, email: string, role: Role): Promise<User> {
  const user = await users.selectUserByEmail(db, email);
  return withTransaction(db, async (client) => {
    const updated = await users.updateRole(client, user.id, role);
    await recordEvent(client, 'role.change', { email: user.email, details: { from: user.role, to: role } });
    return updated;
  });
}

// The identity of a user id, from the cache when possible. `cacheUntil` bounds how long the
// answer may be kept (the credential's own expiry).
export async function identityForUser(
  db: Db,
  userId: number,
  cache: IdentityCache | undefined,
  cacheUntil: Date,
): Promise<Identity> {
  const key = `user:${userId}`;
  const cached = cache?.get(key);
  if (cached) return cached;
  const generation = cache?.generation;
  try {
    const identity = await users.selectIdentityById(db, userId);
    if (generation !== undefined) cache?.set(key, identity, cacheUntil, generation);
    return identity;
  } catch (err) {
    if (err instanceof NotFoundError) throw new InvalidAuthenticationTokenError();
    throw err;
  }
}

async function userForEmail(db: Db, email: string | undefined): Promise<User> {
  const v = new Validator();
  checkEmail(v, email ?? '');
  v.assertValid();
  try {
    return await users.selectUserByEmail(db, email as string);
  } catch (err) {
    if (err instanceof NotFoundError) throw new ValidationError({ email: 'no matching email address found' });
    throw err;
  }
}

export async function requestActivationToken(
  { db, jobs }: AccountDeps,
  input: { email?: string },
): Promise<void> {
  const user = await userForEmail(db, input.email);
  if (user.activated) throw new ValidationError({ email: 'user has already been activated' });
  await withTransaction(db, async (client) => {
    const token = generateToken(user.id, SCOPES.activation);
    await insertToken(client, token);
    await enqueueEmail(jobs, client, {
      template: 'token_activation',
      to: user.email,
      userId: user.id,
      token: token.plaintext,
    });
  });
}

export async function requestPasswordReset(
  { db, jobs }: AccountDeps,
  input: { email?: string },
): Promise<void> {
  const user = await userForEmail(db, input.email);
  if (!user.activated) throw new ValidationError({ email: 'user account must be activated' });
  await withTransaction(db, async (client) => {
    const token = generateToken(user.id, SCOPES.passwordReset);
    await insertToken(client, token);
    await enqueueEmail(jobs, client, {
      template: 'token_password_reset',
      to: user.email,
      userId: user.id,
      token: token.plaintext,
    });
  });
}

// Sets a new password and ends every session of the user: reset tokens and, beyond the
// book, authentication tokens, JWTs, API keys and linked provider identities too, since a
// reset usually means the old password leaked and a thief could have made keys with it, or
// linked an identity of their own.
export async function resetPassword(
  { db }: AccountDeps,
  input: { password?: string; token?: string },
): Promise<void> {
  const v = new Validator();
  checkPasswordPlaintext(v, input.password ?? '');
  checkTokenPlaintext(v, input.token ?? '');
  v.assertValid();
  const user = await userForToken(
    db,
    input.token as string,
    SCOPES.passwordReset.name,
    'invalid or expired password reset token',
  );
  const passwordHash = await hashPassword(input.password as string);
  await withTransaction(db, async (client) => {
    await users.updateUser(client, { ...user, passwordHash });
    await users.endTokenGeneration(client, user.id);
    await deleteTokensForUser(client, SCOPES.passwordReset.name, user.id);
    await deleteTokensForUser(client, SCOPES.authentication.name, user.id);
    await revokeAllApiKeys(client, user.id);
    await deleteLinksOfUser(client, user.id);
    await forgetAccountFailures(client, user.email.toLowerCase());
  });
}

// The identity behind a bearer token, or InvalidAuthenticationTokenError. With a cache,
// a token seen recently costs no query.
export async function authenticate(
  db: Db,
  plaintext: string,
  cache?: IdentityCache,
  beforeLookup?: () => void | Promise<void>,
): Promise<Identity> {
  const v = new Validator();
  checkTokenPlaintext(v, plaintext);
  if (Object.keys(v.errors).length > 0) throw new InvalidAuthenticationTokenError();
  const hash = hashToken(plaintext);
  const key = hash.toString('base64');
  const cached = cache?.get(key);
  if (cached) return cached;
  await beforeLookup?.();
  // An invalidation that arrives while the query runs must win over its (older) answer.
  const generation = cache?.generation;
  try {
    const { identity, expiry } = await users.selectIdentityForToken(db, hash, SCOPES.authentication.name);
    if (generation !== undefined) cache?.set(key, identity, expiry, generation);
    return identity;
  } catch (err) {
    if (err instanceof NotFoundError) throw new InvalidAuthenticationTokenError();
    throw err;
  }
}

// Users by id, for batch loaders of other modules (a product's owner): one query for all.
export async function usersByIds(db: Db, ids: readonly number[]): Promise<Map<number, User>> {
  return new Map((await users.selectUsersByIds(db, ids)).map((user) => [user.id, user]));
}
