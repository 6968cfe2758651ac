CREATE TABLE IF NOT EXISTS products (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    stock integer NOT NULL DEFAULT 0 CHECK (stock >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS products_user_id_idx ON products (user_id);
-- The list's order (newest first, ties by id) read straight from an index.
CREATE INDEX IF NOT EXISTS products_created_at_id_idx ON products (created_at DESC, id DESC);
