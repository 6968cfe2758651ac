// SQL for the users table.
import type { Queryable } from '../platform/db.ts';
import { EditConflictError, NotFoundError } from '../platform/errors.ts';
import type { Identity, Role, User } from './user.ts';

export class DuplicateEmailError extends Error {}

type UserRow = {
  id: number;
  created_at: Date;
  name: string;
  email: string;
  password_hash: Buffer;
  activated: boolean;
  version: number;
  role: Role;
  token_generation: number;
};

function toUser(row: UserRow): User {
  return {
    id: row.id,
    createdAt: row.created_at,
    name: row.name,
    email: row.email,
    passwordHash: row.password_hash,
    activated: row.activated,
    version: row.version,
    role: row.role,
    tokenGeneration: row.token_generation,
  };
}

const USER_COLUMNS = 'id, created_at, name, email, password_hash, activated, version, role, token_generation';

const INSERT_USER = `
  INSERT INTO users (name, email, password_hash, activated)
  VALUES ($1, $2, $3, $4)
  RETURNING ${USER_COLUMNS}`;

const SELECT_USER_BY_EMAIL = `SELECT ${USER_COLUMNS} FROM users WHERE email = $1`;

const SELECT_USERS_BY_IDS = `SELECT ${USER_COLUMNS} FROM users WHERE id = ANY($1::bigint[])`;

const UPDATE_USER = `
  UPDATE users
  SET name = $1, email = $2, password_hash = $3, activated = $4, version = version + 1
  WHERE id = $5 AND version = $6
  RETURNING version`;

const PERMISSIONS_OF_USER = `
  ARRAY(SELECT permissions.code
        FROM users_permissions
        INNER JOIN permissions ON permissions.id = users_permissions.permission_id
        WHERE users_permissions.user_id = users.id) AS permissions`;

// Token → user → permissions in one round trip (the book needs three).
const SELECT_IDENTITY_FOR_TOKEN = `
  SELECT users.id, users.created_at, users.name, users.email, users.password_hash, users.activated, users.version,
         users.role, users.token_generation, tokens.expiry, ${PERMISSIONS_OF_USER}
  FROM users
  INNER JOIN tokens ON users.id = tokens.user_id
  WHERE tokens.hash = $1 AND tokens.scope = $2 AND tokens.expiry > now()`;

const SELECT_IDENTITY_BY_ID = `
  SELECT ${USER_COLUMNS}, ${PERMISSIONS_OF_USER}
  FROM users
  WHERE users.id = $1`;

const UPDATE_ROLE = `
  UPDATE users SET role = $2, token_generation = token_generation + 1
  WHERE id = $1
  RETURNING ${USER_COLUMNS}`;

const END_TOKEN_GENERATION = 'UPDATE users SET token_generation = token_generation + 1 WHERE id = $1';

const UNIQUE_VIOLATION = '23505';

// Tells every instance's identity cache that this user's tokens, password, activation or
// permissions changed. Inside a transaction it is delivered when (and only if) it commits.
export async function notifyIdentityChanged(db: Queryable, userId: number): Promise<void> {
  await db.query({
    name: 'notify-identity-changed',
    text: "SELECT pg_notify('greenlight_identity', $1::text)",
    values: [userId],
  });
}

export async function insertUser(
  db: Queryable,
  user: { name: string; email: string; passwordHash: Buffer; activated: boolean },
): Promise<User> {
  try {
    const { rows } = await db.query<UserRow>({
      name: 'insert-user',
      text: INSERT_USER,
      values: [user.name, user.email, user.passwordHash, user.activated],
    });
    return toUser(rows[0] as UserRow);
  } catch (err) {
    if ((err as { code?: string; constraint?: string }).code === UNIQUE_VIOLATION)
      throw new DuplicateEmailError();
    throw err;
  }
}

export async function selectUserByEmail(db: Queryable, email: string): Promise<User> {
  const { rows } = await db.query<UserRow>({
    name: 'select-user-by-email',
    text: SELECT_USER_BY_EMAIL,
    values: [email],
  });
  if (rows.length === 0) throw new NotFoundError();
  return toUser(rows[0] as UserRow);
}

export async function updateUser(db: Queryable, user: User): Promise<User> {
  try {
    const { rows } = await db.query<{ version: number }>({
      name: 'update-user',
      text: UPDATE_USER,
      values: [user.name, user.email, user.passwordHash, user.activated, user.id, user.version],
    });
    if (rows.length === 0) throw new EditConflictError();
    await notifyIdentityChanged(db, user.id);
    return { ...user, version: (rows[0] as { version: number }).version };
  } catch (err) {
    if ((err as { code?: string }).code === UNIQUE_VIOLATION) throw new DuplicateEmailError();
    throw err;
  }
}

type IdentityRow = UserRow & { permissions: string[]; expiry: Date };

// The identity behind a token of `scope`, and when that token expires.
export async function selectIdentityForToken(
  db: Queryable,
  tokenHash: Buffer,
  scope: string,
): Promise<{ identity: Identity; expiry: Date }> {
  const { rows } = await db.query<IdentityRow>({
    name: 'select-identity-for-token',
    text: SELECT_IDENTITY_FOR_TOKEN,
    values: [tokenHash, scope],
  });
  if (rows.length === 0) throw new NotFoundError();
  const row = rows[0] as IdentityRow;
  return { identity: { ...toUser(row), permissions: row.permissions }, expiry: row.expiry };
}

// The identity of a user id (a JWT's or an API key's subject).
export async function selectIdentityById(db: Queryable, userId: number): Promise<Identity> {
  const { rows } = await db.query<UserRow & { permissions: string[] }>({
    name: 'select-identity-by-id',
    text: SELECT_IDENTITY_BY_ID,
    values: [userId],
  });
  if (rows.length === 0) throw new NotFoundError();
  const row = rows[0] as UserRow & { permissions: string[] };
  return { ...toUser(row), permissions: row.permissions };
}

// A new role also ends the user's JWTs, which carry the old one.
export async function updateRole(db: Queryable, userId: number, role: Role): Promise<User> {
  const { rows } = await db.query<UserRow>(UPDATE_ROLE, [userId, role]);
  if (rows.length === 0) throw new NotFoundError();
  await notifyIdentityChanged(db, userId);
  return toUser(rows[0] as UserRow);
}

// Every JWT issued to the user so far stops working on every instance.
export async function endTokenGeneration(db: Queryable, userId: number): Promise<void> {
  await db.query(END_TOKEN_GENERATION, [userId]);
  await notifyIdentityChanged(db, userId);
}

// Many users in one query (batch loaders); ids that name no user are simply absent.
export async function selectUsersByIds(db: Queryable, ids: readonly number[]): Promise<User[]> {
  const { rows } = await db.query<UserRow>(SELECT_USERS_BY_IDS, [ids]);
  return rows.map(toUser);
}

const USER_STATS = `
  SELECT count(*) AS total, count(*) FILTER (WHERE activated) AS activated,
         count(*) FILTER (WHERE role = 'admin') AS admins,
         count(*) FILTER (WHERE created_at > now() - interval '24 hours') AS registered_last_day
  FROM users`;

export type UserStats = { total: number; activated: number; admins: number; registeredLastDay: number };

export async function selectUserStats(db: Queryable): Promise<UserStats> {
  const { rows } = await db.query<{
    total: number;
    activated: number;
    admins: number;
    registered_last_day: number;
  }>(USER_STATS);
  const row = rows[0] as { total: number; activated: number; admins: number; registered_last_day: number };
  return {
    total: row.total,
    activated: row.activated,
    admins: row.admins,
    registeredLastDay: row.registered_last_day,
  };
}
