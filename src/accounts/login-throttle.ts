// Failed logins slow down per account and per address: after 5 failures each further
// attempt must wait 1 s, 2 s, 4 s ... (at most 15 minutes) after the last failure, or it
// is refused with 429 and Retry-After before any password is checked. Failures are read
// from the audit trail, so every instance sees the same count; an account's count restarts
// at its next successful login, an address's failures are forgotten after 15 minutes.
import { loginFailures } from '../audit/audit.ts';
import type { Db } from '../platform/db.ts';
import { RateLimitedError } from '../platform/errors.ts';

const FREE_FAILURES = 5;
const WINDOW_SECONDS = 15 * 60;
const MAX_DELAY_SECONDS = 15 * 60;

export async function checkLoginThrottle(db: Db, email: string, address: string | undefined): Promise<void> {
  const counts = await Promise.all([
    loginFailures(db, { email }, WINDOW_SECONDS),
    ...(address ? [loginFailures(db, { address }, WINDOW_SECONDS)] : []),
  ]);
  let waitMs = 0;
  for (const { failures, last } of counts) {
    if (failures < FREE_FAILURES || !last) continue;
    const delaySeconds = Math.min(2 ** (failures - FREE_FAILURES), MAX_DELAY_SECONDS);
    waitMs = Math.max(waitMs, last.getTime() + delaySeconds * 1000 - Date.now());
  }
  if (waitMs > 0) throw new RateLimitedError(Math.ceil(waitMs / 1000));
}
