-- Failed and in-flight logins per account (lower-cased e-mail) and per client address: the
-- login throttle's counters (src/accounts/login-throttle.ts). An attempt is counted here
-- before its password is checked, in one statement, so parallel guesses cannot all pass.
CREATE TABLE IF NOT EXISTS login_throttle (
    kind text NOT NULL CHECK (kind IN ('account', 'address')),
    key text NOT NULL,
    failures integer NOT NULL,
    window_start timestamptz NOT NULL,
    last_failure timestamptz NOT NULL,
    PRIMARY KEY (kind, key)
);

CREATE INDEX IF NOT EXISTS login_throttle_last_failure_idx ON login_throttle (last_failure);
