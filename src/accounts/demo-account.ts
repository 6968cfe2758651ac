// The development demo account: activated, allowed to read and write movies.
import type { Db } from '../platform/db.ts';
import { NotFoundError } from '../platform/errors.ts';
import { hashPassword } from './password.ts';
import { grantPermissions } from './permissions.sql.ts';
import { insertUser, selectUserByEmail } from './users.sql.ts';

export const DEMO_ACCOUNT = {
  name: 'Demo User',
  email: 'demo@greenlight.local',
  password: 'pa55word',
} as const;

// Creates the account unless a user with its e-mail exists; returns whether it created it.
export async function ensureDemoAccount(db: Db): Promise<boolean> {
  try {
    await selectUserByEmail(db, DEMO_ACCOUNT.email);
    return false;
  } catch (err) {
    if (!(err instanceof NotFoundError)) throw err;
  }
  const user = await insertUser(db, {
    name: DEMO_ACCOUNT.name,
    email: DEMO_ACCOUNT.email,
    passwordHash: await hashPassword(DEMO_ACCOUNT.password),
    activated: true,
  });
  await grantPermissions(db, user.id, ['movies:read', 'movies:write']);
  return true;
}
