// Failed logins slow down per account, and stop per client address past a ceiling meant for
// an attacker, not for an office behind one NAT:
// - an account: after ACCOUNT_FREE_FAILURES failures each further attempt must wait 1 s,
//   2 s, 4 s ... (at most ACCOUNT_MAX_DELAY_SECONDS) after the last failure; the count
//   restarts at the next successful login and is forgotten after WINDOW_SECONDS without one;
// - an address: ADDRESS_FAILURES failures (on any accounts) per WINDOW_SECONDS, counted from
//   its first failure; past them every login from it waits for the window's end.
// Otherwise the attempt is refused with 429 and Retry-After before any password is checked.
// The attempt is counted (as a failure) in the same statement that decides, before the hash
// is checked, so parallel guesses see each other; a success gives it back. The counters are
// in PostgreSQL (login_throttle), so every instance sees the same counts.
import { type Db, withTransaction } from '../platform/db.ts';
import { RateLimitedError } from '../platform/errors.ts';
import {
  countAttempt,
  forgetAccount,
  pruneLoginThrottle,
  type ThrottleRule,
  uncountAttempt,
} from './login-throttle.sql.ts';

export const ACCOUNT_FREE_FAILURES = 5;
export const ACCOUNT_MAX_DELAY_SECONDS = 15 * 60;
export const ADDRESS_FAILURES = 100;
export const WINDOW_SECONDS = 15 * 60;

const ACCOUNT_RULE: ThrottleRule = {
  windowSeconds: WINDOW_SECONDS,
  freeFailures: ACCOUNT_FREE_FAILURES,
  maxDelaySeconds: ACCOUNT_MAX_DELAY_SECONDS,
};
const ADDRESS_RULE: ThrottleRule = { windowSeconds: WINDOW_SECONDS, freeFailures: ADDRESS_FAILURES };

// An attempt counted in advance; tell it how the password check ended.
export type LoginAttempt = Readonly<{
  succeeded: () => Promise<void>;
  // The check itself failed (the database, say): not the client's failure.
  abandoned: () => Promise<void>;
}>;

// Counts the attempt against both limits (all or nothing), or throws RateLimitedError.
export async function beginLoginAttempt(
  db: Db,
  email: string,
  address: string | undefined,
): Promise<LoginAttempt> {
  const account = email.toLowerCase();
  // Always the account first, then the address: two attempts never wait on each other in
  // opposite orders. A refusal rolls back both counts.
  await withTransaction(db, async (client) => {
    let verdict = await countAttempt(client, 'account', account, ACCOUNT_RULE);
    if (verdict.allowed && address) verdict = await countAttempt(client, 'address', address, ADDRESS_RULE);
    if (!verdict.allowed) throw new RateLimitedError(verdict.retryAfterSeconds);
  });
  const giveBackAddress = () => (address ? uncountAttempt(db, 'address', address) : Promise.resolve());
  return {
    succeeded: async () => {
      await forgetAccount(db, account);
      await giveBackAddress();
    },
    abandoned: async () => {
      await uncountAttempt(db, 'account', account);
      await giveBackAddress();
    },
  };
}

// Both rules look back at most WINDOW_SECONDS (an account's delay is capped below it), so an
// older counter is only a row an attacker's addresses would leave behind.
export function forgetOldLoginFailures(db: Db): Promise<number> {
  return pruneLoginThrottle(db, Math.max(WINDOW_SECONDS, ACCOUNT_MAX_DELAY_SECONDS));
}
