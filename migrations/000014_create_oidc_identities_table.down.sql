DROP TABLE IF EXISTS oidc_identities;
