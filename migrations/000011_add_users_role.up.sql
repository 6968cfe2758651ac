-- Roles for the products API (seed 002), and a counter that ends every JWT issued before
-- it was bumped (password reset, role change, log out everywhere). Both have defaults, so
-- the book's code and a Go Greenlight service keep working on this table.
ALTER TABLE users ADD COLUMN IF NOT EXISTS role text NOT NULL DEFAULT 'user';
ALTER TABLE users ADD CONSTRAINT users_role_check CHECK (role IN ('user', 'admin'));
ALTER TABLE users ADD COLUMN IF NOT EXISTS token_generation integer NOT NULL DEFAULT 0;
