-- Which local user an external identity provider's subject is.
CREATE TABLE IF NOT EXISTS oidc_identities (
    issuer text NOT NULL,
    subject text NOT NULL,
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (issuer, subject)
);

CREATE INDEX IF NOT EXISTS oidc_identities_user_id_idx ON oidc_identities (user_id);
