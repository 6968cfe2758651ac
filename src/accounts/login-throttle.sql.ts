// SQL for the login_throttle table: one statement counts an attempt only if the rules allow
// it, so the decision and the count happen under the row's lock and parallel attempts see
// each other. The rules themselves are in src/accounts/login-throttle.ts.
import type { Queryable } from '../platform/db.ts';

export type ThrottleKind = 'account' | 'address';

// Parameters of both kinds: $1 the window in seconds, $2 the failures allowed freely, $3 the
// key, $4 the seconds after which attempts still counted as in flight are stale, and for
// accounts $5 the longest delay in seconds.
const WINDOW = "$1::float8 * interval '1 second'";

// The attempts being checked now. A count not renewed for `seconds` is left by a process
// that died mid-check: those attempts stay counted as failures, but nothing waits for them.
const inFlight = (seconds: string) =>
  `CASE WHEN t.in_flight_since > now() - ${seconds}::float8 * interval '1 second' THEN t.in_flight ELSE 0 END`;
const IN_FLIGHT = inFlight('$4');

// When a row with `failures` counted failures allows the next attempt. An account: once its
// window has passed without a failure, below $2 failures, or after a delay doubling from 1 s
// with every failure past the $2nd (at most $5 s) since the last one. An address: once its
// window from its first counted failure has passed, or below $2 failures.
const FREE_AT: Readonly<Record<ThrottleKind, (failures: string) => string>> = {
  account: (failures) => `CASE
    WHEN t.last_failure <= now() - ${WINDOW} OR ${failures} < $2::int THEN '-infinity'::timestamptz
    ELSE t.last_failure + least(power(2, ${failures} - $2::int), $5::float8) * interval '1 second'
  END`,
  address: (failures) => `CASE
    WHEN t.window_start <= now() - ${WINDOW} OR ${failures} < $2::int THEN '-infinity'::timestamptz
    ELSE t.window_start + ${WINDOW}
  END`,
};

// A counter past its window starts again at this attempt.
const WINDOW_OVER: Readonly<Record<ThrottleKind, string>> = {
  account: `t.last_failure <= now() - ${WINDOW}`,
  address: `t.window_start <= now() - ${WINDOW}`,
};

// The attempt is counted as a failure in advance and as in flight.
const count = (kind: ThrottleKind) => `
  INSERT INTO login_throttle AS t (kind, key, failures, window_start, last_failure, in_flight, in_flight_since)
  VALUES ('${kind}', $3::text, 1, now(), now(), 1, now())
  ON CONFLICT (kind, key) DO UPDATE SET
    failures = CASE WHEN ${WINDOW_OVER[kind]} THEN 1 ELSE t.failures + 1 END,
    window_start = CASE WHEN ${WINDOW_OVER[kind]} THEN now() ELSE t.window_start END,
    last_failure = greatest(t.last_failure, now()),
    in_flight = ${IN_FLIGHT} + 1,
    in_flight_since = now()
  WHERE ${FREE_AT[kind]('t.failures')} <= now()
  RETURNING t.failures`;

// A refusal: the seconds to wait, and whether it is only the attempts in flight that refuse
// (without them the rule would allow this one).
const refusal = (kind: ThrottleKind) => `
  SELECT greatest(1, ceil(extract(epoch FROM ${FREE_AT[kind]('t.failures')} - now())))::int AS seconds,
    ${IN_FLIGHT} > 0 AND ${FREE_AT[kind](`t.failures - ${IN_FLIGHT}`)} <= now() AS in_flight_only
  FROM login_throttle AS t WHERE kind = '${kind}' AND key = $3::text`;

const COUNT = { account: count('account'), address: count('address') };
const REFUSAL = { account: refusal('account'), address: refusal('address') };

export type ThrottleRule = Readonly<{
  windowSeconds: number;
  freeFailures: number;
  inFlightSeconds: number;
  // accounts only
  maxDelaySeconds?: number;
}>;

export type ThrottleVerdict =
  | { allowed: true }
  | { allowed: false; retryAfterSeconds: number; inFlightOnly: boolean };

// Counts an attempt as a failure in flight if the rule allows one now; otherwise the seconds
// to wait, and whether attempts still in flight are all that stand in the way.
export async function countAttempt(
  db: Queryable,
  kind: ThrottleKind,
  key: string,
  rule: ThrottleRule,
): Promise<ThrottleVerdict> {
  const values: unknown[] = [rule.windowSeconds, rule.freeFailures, key, rule.inFlightSeconds];
  if (kind === 'account') values.push(rule.maxDelaySeconds);
  const { rowCount } = await db.query({ name: `count-login-${kind}`, text: COUNT[kind], values });
  if ((rowCount ?? 0) > 0) return { allowed: true };
  const { rows } = await db.query<{ seconds: number; in_flight_only: boolean }>({
    name: `refuse-login-${kind}`,
    text: REFUSAL[kind],
    values,
  });
  return {
    allowed: false,
    retryAfterSeconds: rows[0]?.seconds ?? 1,
    inFlightOnly: rows[0]?.in_flight_only ?? false,
  };
}

// How an attempt counted in advance ended: a failure keeps its count, a success of an
// account restarts the count at the attempts still in flight (their checks have not failed
// yet, and may), an abandoned check or an address's success gives the count back.
export type AttemptOutcome = 'failed' | 'succeeded' | 'given back';

const SETTLED_IN_FLIGHT = `greatest(${inFlight('$3')} - 1, 0)`;
const SETTLED_FAILURES: Readonly<Record<AttemptOutcome, string>> = {
  failed: 't.failures',
  succeeded: `CASE WHEN t.kind = 'account' THEN ${SETTLED_IN_FLIGHT} ELSE greatest(t.failures - 1, 0) END`,
  'given back': 'greatest(t.failures - 1, 0)',
};

export async function settleAttempt(
  db: Queryable,
  kind: ThrottleKind,
  key: string,
  outcome: AttemptOutcome,
  rule: ThrottleRule,
): Promise<void> {
  await db.query({
    name: `settle-login-${outcome.replace(' ', '-')}`,
    text: `UPDATE login_throttle AS t
           SET failures = ${SETTLED_FAILURES[outcome]}, in_flight = ${SETTLED_IN_FLIGHT}
           WHERE kind = $1 AND key = $2`,
    values: [kind, key, rule.inFlightSeconds],
  });
}

// The account's count of failures starts again (a password reset: its owner has just shown
// control of the e-mail, and whatever someone else's guesses held up is lifted).
export async function forgetAccountFailures(db: Queryable, account: string): Promise<void> {
  await db.query("DELETE FROM login_throttle WHERE kind = 'account' AND key = $1", [account]);
}

// Counters whose last failure is older than `seconds` no longer decide anything.
export async function pruneLoginThrottle(db: Queryable, seconds: number): Promise<number> {
  const { rowCount } = await db.query(
    "DELETE FROM login_throttle WHERE last_failure < now() - $1::float8 * interval '1 second'",
    [seconds],
  );
  return rowCount ?? 0;
}
