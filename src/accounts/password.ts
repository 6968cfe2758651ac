// bcrypt at the book's cost 12, computed natively on libuv's thread pool so the event loop
// keeps serving. Hashes are written as $2a$ like Go's bcrypt, so a database can move
// between the book's service and this one in either direction.
import { hash, verify } from '@node-rs/bcrypt';

export const BCRYPT_COST = 12;

export async function hashPassword(plaintext: string): Promise<Buffer> {
  return Buffer.from(await hash(plaintext, { cost: BCRYPT_COST, version: '2a' }));
}

export function passwordMatches(plaintext: string, passwordHash: Buffer): Promise<boolean> {
  return verify(plaintext, passwordHash.toString());
}

// Compared against when the e-mail is unknown, so a failed login takes as long whether or
// not the account exists. Checking costs what the hash's cost field says, so any well-formed
// hash at BCRYPT_COST will do: a fixed one spares every process hashing one as it starts.
const DUMMY_HASH = `$2a$${BCRYPT_COST}$aPPl6kLZNE4stj.XlB.KEOKZOJzhK4yqtYxQLttYakXMRAxoPMLMO`;

export async function spendPasswordCheckTime(plaintext: string): Promise<void> {
  await verify(plaintext, DUMMY_HASH);
}
