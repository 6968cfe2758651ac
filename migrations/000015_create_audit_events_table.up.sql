-- Security-relevant events: logins (success and failure), registrations, API keys, roles,
-- permissions, logouts. Failed logins in here also drive the login throttle.
CREATE TABLE IF NOT EXISTS audit_events (
    id bigserial PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    action text NOT NULL,
    -- who did it (null: an anonymous client or the command line)
    actor_id bigint REFERENCES users ON DELETE SET NULL,
    -- the account concerned; for a login, the e-mail that was tried
    email citext,
    address text,
    request_id text,
    details jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS audit_events_login_email_idx
    ON audit_events (email, created_at) WHERE action IN ('login.failure', 'login.success');
CREATE INDEX IF NOT EXISTS audit_events_login_address_idx
    ON audit_events (address, created_at) WHERE action = 'login.failure';
