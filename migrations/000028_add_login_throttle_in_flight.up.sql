-- How many of a counter's attempts are still being checked, and when the latest of them was
-- counted: an attempt refused only because others are in flight waits for them instead of
-- getting 429, so parallel logins with the right password all succeed, and a success keeps
-- the advance counts of the guesses still in flight (src/accounts/login-throttle.ts). Past
-- IN_FLIGHT_SECONDS without a new attempt the count is stale (a process died mid-check).
ALTER TABLE login_throttle ADD COLUMN IF NOT EXISTS in_flight integer NOT NULL DEFAULT 0;
ALTER TABLE login_throttle ADD COLUMN IF NOT EXISTS in_flight_since timestamptz;
