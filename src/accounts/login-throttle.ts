// Failed logins slow down per account, and stop per client address past a ceiling meant for
// an attacker, not for an office behind one NAT:
// - an account: after ACCOUNT_FREE_FAILURES failures each further attempt must wait 1 s,
//   2 s, 4 s ... (at most ACCOUNT_MAX_DELAY_SECONDS) after the last failure; the count
//   restarts at the next successful login and is forgotten after WINDOW_SECONDS without one;
// - an address: ADDRESS_FAILURES failures (on any accounts) per WINDOW_SECONDS, counted from
//   its first failure; past them every login from it waits for the window's end.
// Otherwise the attempt is refused with 429 and Retry-After before any password is checked.
// The attempt is counted (as a failure, and as in flight) in the same statement that
// decides, before the hash is checked, so parallel guesses see each other; a success gives
// it back. An attempt refused only because of attempts still being checked waits for them
// (at most IN_FLIGHT_WAIT_MS) and asks again: parallel logins with the right password all
// succeed, parallel guesses are still checked at most ACCOUNT_FREE_FAILURES at a time. The
// counters are in PostgreSQL (login_throttle), so every instance sees the same counts.
// Within a process the attempts on one account that wait take turns, oldest first: a new
// attempt queues behind them instead of taking the slot an older one waits for, and an
// attempt that ends here wakes the first at once (others' ends are seen by asking again).
import { type Db, withTransaction } from '../platform/db.ts';
import { RateLimitedError } from '../platform/errors.ts';
import {
  type AttemptOutcome,
  countAttempt,
  pruneLoginThrottle,
  settleAttempt,
  type ThrottleRule,
  type ThrottleVerdict,
} from './login-throttle.sql.ts';

export const ACCOUNT_FREE_FAILURES = 5;
export const ACCOUNT_MAX_DELAY_SECONDS = 15 * 60;
export const ADDRESS_FAILURES = 100;
export const WINDOW_SECONDS = 15 * 60;
// A password check takes a fraction of a second; an attempt counted in flight longer ago
// than this was left by a process that died during its check.
const IN_FLIGHT_SECONDS = 30;
// How long an attempt waits for the attempts in flight before it is refused after all, and
// how often it asks again meanwhile (about a password check's time).
const IN_FLIGHT_WAIT_MS = 5000;
const IN_FLIGHT_POLL_MS = 100;

const ACCOUNT_RULE: ThrottleRule = {
  windowSeconds: WINDOW_SECONDS,
  freeFailures: ACCOUNT_FREE_FAILURES,
  inFlightSeconds: IN_FLIGHT_SECONDS,
  maxDelaySeconds: ACCOUNT_MAX_DELAY_SECONDS,
};
const ADDRESS_RULE: ThrottleRule = {
  windowSeconds: WINDOW_SECONDS,
  freeFailures: ADDRESS_FAILURES,
  inFlightSeconds: IN_FLIGHT_SECONDS,
};

// An attempt counted in advance; tell it how the password check ended.
export type LoginAttempt = Readonly<{
  failed: () => Promise<void>;
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
  const giveUpAt = performance.now() + IN_FLIGHT_WAIT_MS;
  const turn = queueFor(account);
  try {
    for (;;) {
      if (turn.first()) {
        const verdict = await countBoth(db, account, address);
        if (verdict.allowed) break;
        if (!verdict.inFlightOnly || performance.now() >= giveUpAt)
          throw new RateLimitedError(verdict.retryAfterSeconds);
      } else if (performance.now() >= giveUpAt) throw new RateLimitedError(1);
      await turn.wait(IN_FLIGHT_POLL_MS * (0.5 + Math.random()));
    }
  } finally {
    turn.leave();
  }
  const settle = async (outcome: AttemptOutcome) => {
    await settleAttempt(db, 'account', account, outcome, ACCOUNT_RULE);
    if (address) await settleAttempt(db, 'address', address, outcome, ADDRESS_RULE);
    waiting.get(account)?.[0]?.wake();
  };
  return {
    failed: () => settle('failed'),
    succeeded: () => settle('succeeded'),
    abandoned: () => settle('given back'),
  };
}

// This process's attempts on each account that are waiting to be counted, oldest first.
type Waiter = { wake: () => void };
const waiting = new Map<string, Waiter[]>();

// A place in the account's line: `first` says whether it may ask now, `wait` sleeps until
// woken or for `ms`, `leave` gives the turn to the next.
function queueFor(account: string) {
  const line = waiting.get(account) ?? [];
  waiting.set(account, line);
  const waiter: Waiter = { wake: () => {} };
  line.push(waiter);
  return {
    first: () => line[0] === waiter,
    wait: (ms: number) =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => waiter.wake(), ms);
        waiter.wake = () => {
          clearTimeout(timer);
          waiter.wake = () => {};
          resolve();
        };
      }),
    leave: () => {
      line.splice(line.indexOf(waiter), 1);
      if (line.length === 0) waiting.delete(account);
      else line[0]?.wake();
    },
  };
}

// Always the account first, then the address: two attempts never wait on each other in
// opposite orders. A refusal rolls back both counts.
async function countBoth(db: Db, account: string, address: string | undefined): Promise<ThrottleVerdict> {
  try {
    await withTransaction(db, async (client) => {
      let verdict = await countAttempt(client, 'account', account, ACCOUNT_RULE);
      if (verdict.allowed && address) verdict = await countAttempt(client, 'address', address, ADDRESS_RULE);
      if (!verdict.allowed) throw new Refused(verdict);
    });
    return { allowed: true };
  } catch (err) {
    if (err instanceof Refused) return err.verdict;
    throw err;
  }
}

class Refused extends Error {
  readonly verdict: ThrottleVerdict;
  constructor(verdict: ThrottleVerdict) {
    super('login attempt refused');
    this.verdict = verdict;
  }
}

// Both rules look back at most WINDOW_SECONDS (an account's delay is capped below it), so an
// older counter is only a row an attacker's addresses would leave behind.
export function forgetOldLoginFailures(db: Db): Promise<number> {
  return pruneLoginThrottle(db, Math.max(WINDOW_SECONDS, ACCOUNT_MAX_DELAY_SECONDS));
}
