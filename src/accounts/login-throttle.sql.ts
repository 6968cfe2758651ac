// SQL for the login_throttle table: one statement counts an attempt only if the rules allow
// it, so the decision and the count happen under the row's lock and parallel attempts see
// each other. The rules themselves are in src/accounts/login-throttle.ts.
import type { Queryable } from '../platform/db.ts';

export type ThrottleKind = 'account' | 'address';

// Parameters of both kinds: $1 the window in seconds, $2 the failures allowed freely, $3 the
// key, and for accounts $4 the longest delay in seconds.
const WINDOW = "$1::float8 * interval '1 second'";

// When a row's counted failures allow the next attempt. An account: once its window has
// passed without a failure, below $2 failures, or after a delay doubling from 1 s with
// every failure past the $2nd (at most $4 s) since the last one. An address: once its
// window from its first counted failure has passed, or below $2 failures.
const FREE_AT: Readonly<Record<ThrottleKind, string>> = {
  account: `CASE
    WHEN t.last_failure <= now() - ${WINDOW} OR t.failures < $2::int THEN '-infinity'::timestamptz
    ELSE t.last_failure + least(power(2, t.failures - $2::int), $4::float8) * interval '1 second'
  END`,
  address: `CASE
    WHEN t.window_start <= now() - ${WINDOW} OR t.failures < $2::int THEN '-infinity'::timestamptz
    ELSE t.window_start + ${WINDOW}
  END`,
};

// A counter past its window starts again at this attempt.
const WINDOW_OVER: Readonly<Record<ThrottleKind, string>> = {
  account: `t.last_failure <= now() - ${WINDOW}`,
  address: `t.window_start <= now() - ${WINDOW}`,
};

const count = (kind: ThrottleKind) => `
  INSERT INTO login_throttle AS t (kind, key, failures, window_start, last_failure)
  VALUES ('${kind}', $3::text, 1, now(), now())
  ON CONFLICT (kind, key) DO UPDATE SET
    failures = CASE WHEN ${WINDOW_OVER[kind]} THEN 1 ELSE t.failures + 1 END,
    window_start = CASE WHEN ${WINDOW_OVER[kind]} THEN now() ELSE t.window_start END,
    last_failure = greatest(t.last_failure, now())
  WHERE ${FREE_AT[kind]} <= now()
  RETURNING t.failures`;

const retryAfter = (kind: ThrottleKind) => `
  SELECT greatest(1, ceil(extract(epoch FROM ${FREE_AT[kind]} - now())))::int AS seconds
  FROM login_throttle AS t WHERE kind = '${kind}' AND key = $3::text`;

const COUNT = { account: count('account'), address: count('address') };
const RETRY_AFTER = { account: retryAfter('account'), address: retryAfter('address') };

export type ThrottleRule = Readonly<{
  windowSeconds: number;
  freeFailures: number;
  // accounts only
  maxDelaySeconds?: number;
}>;

// Counts an attempt as a failure if the rule allows one now; otherwise the seconds to wait.
export async function countAttempt(
  db: Queryable,
  kind: ThrottleKind,
  key: string,
  rule: ThrottleRule,
): Promise<{ allowed: true } | { allowed: false; retryAfterSeconds: number }> {
  const values: unknown[] = [rule.windowSeconds, rule.freeFailures, key];
  if (kind === 'account') values.push(rule.maxDelaySeconds);
  const { rowCount } = await db.query({ name: `count-login-${kind}`, text: COUNT[kind], values });
  if ((rowCount ?? 0) > 0) return { allowed: true };
  const { rows } = await db.query<{ seconds: number }>(RETRY_AFTER[kind], values);
  return { allowed: false, retryAfterSeconds: rows[0]?.seconds ?? 1 };
}

// An account's count restarts at a successful login.
export async function forgetAccount(db: Queryable, key: string): Promise<void> {
  await db.query("DELETE FROM login_throttle WHERE kind = 'account' AND key = $1", [key]);
}

// An attempt counted in advance that turned out not to be a failure.
export async function uncountAttempt(db: Queryable, kind: ThrottleKind, key: string): Promise<void> {
  await db.query(
    'UPDATE login_throttle SET failures = failures - 1 WHERE kind = $1 AND key = $2 AND failures > 0',
    [kind, key],
  );
}

// Counters whose last failure is older than `seconds` no longer decide anything.
export async function pruneLoginThrottle(db: Queryable, seconds: number): Promise<number> {
  const { rowCount } = await db.query(
    "DELETE FROM login_throttle WHERE last_failure < now() - $1::float8 * interval '1 second'",
    [seconds],
  );
  return rowCount ?? 0;
}
