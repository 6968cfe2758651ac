-- Runtime settings an operator changed without a restart (greenlight config set,
-- PUT /v1/admin/settings/:name). A row overrides the start-up flag of every instance;
-- no row means the flag's value.
CREATE TABLE IF NOT EXISTS settings (
    name text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- who changed it: the admin's e-mail, or cli:<operating-system user>
    updated_by text NOT NULL
);
