-- Orders (docs/orders.md): the order row is the workflow's step log, its status a state
-- machine the database enforces. Prices and totals are NUMERIC like products.price; items keep
-- the unit price of the moment the order was placed. product_id is no foreign key: a product
-- may be deleted while orders of it exist (its reservation then fails, its release is a no-op).

-- The state machine: the only status changes an UPDATE may make (trg below).
CREATE TABLE IF NOT EXISTS order_transitions (
    from_status text NOT NULL,
    to_status text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);

INSERT INTO order_transitions (from_status, to_status) VALUES
    ('pending', 'reserved'),
    ('pending', 'rejected'),
    ('pending', 'cancelled'),
    ('reserved', 'paid'),
    ('reserved', 'cancelled'),
    ('paid', 'confirmed'),
    ('paid', 'cancelled')
ON CONFLICT DO NOTHING;

CREATE TABLE IF NOT EXISTS orders (
    id bigserial PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'reserved', 'paid', 'confirmed', 'rejected', 'cancelled')),
    total numeric(14, 2) NOT NULL CHECK (total >= 0),
    failure_reason text,
    payment_token text NOT NULL,
    -- set (committed) before the first charge attempt: from then on the charge's outcome may
    -- be unknown, and a compensation resolves it by replaying the charge's idempotency key
    charge_attempted_at timestamptz,
    charge_id text,
    -- a cancel asked for (by the owner, an admin or the timeout sweep): the workflow's next
    -- step compensates instead of going on
    cancel_requested_at timestamptz,
    cancel_reason text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1
);

CREATE INDEX IF NOT EXISTS orders_user_id_created_at_idx ON orders (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS orders_created_at_id_idx ON orders (created_at DESC, id DESC);
-- The timeout sweep reads only the orders still in flight.
CREATE INDEX IF NOT EXISTS orders_open_idx ON orders (created_at)
    WHERE status IN ('pending', 'reserved', 'paid');

CREATE TABLE IF NOT EXISTS order_items (
    order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
    position integer NOT NULL,
    product_id bigint NOT NULL,
    quantity integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, position),
    UNIQUE (order_id, product_id)
);

-- A new order starts pending; a status change must be a row of order_transitions.
CREATE OR REPLACE FUNCTION orders_check_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status <> 'pending' THEN
            RAISE EXCEPTION 'an order starts pending, not %', NEW.status
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.status IS DISTINCT FROM OLD.status AND NOT EXISTS (
        SELECT 1 FROM order_transitions WHERE from_status = OLD.status AND to_status = NEW.status
    ) THEN
        RAISE EXCEPTION 'order % cannot go from % to %', OLD.id, OLD.status, NEW.status
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS orders_transition ON orders;
CREATE TRIGGER orders_transition BEFORE INSERT OR UPDATE ON orders
    FOR EACH ROW EXECUTE FUNCTION orders_check_transition();

-- The history GET /api/v1/orders/{id}/events answers, written in the same statement as each
-- status change; never pruned.
CREATE TABLE IF NOT EXISTS order_history (
    id bigserial PRIMARY KEY,
    order_id bigint NOT NULL REFERENCES orders ON DELETE CASCADE,
    status text NOT NULL,
    detail text NOT NULL DEFAULT '',
    at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS order_history_order_id_idx ON order_history (order_id, id);

-- The outbox of order changes (src/platform/outbox.ts's shape, as product_events): written in
-- the same statement as each change, for a change stream to deliver later.
CREATE TABLE IF NOT EXISTS order_events (
    id bigserial PRIMARY KEY,
    created_at timestamp(0) with time zone NOT NULL DEFAULT now(),
    type text NOT NULL,
    order_id bigint NOT NULL,
    payload jsonb NOT NULL,
    xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);

CREATE INDEX IF NOT EXISTS order_events_created_at_idx ON order_events (created_at);
CREATE INDEX IF NOT EXISTS order_events_xid_id_idx ON order_events (xid, id);

-- Idempotency keys of POST /api/v1/orders, per user. A row is written in the transaction that
-- places the order, with the answer to replay, so it exists exactly when the order does; a
-- request still in progress holds the key's advisory lock (src/orders/orders.sql.ts).
CREATE TABLE IF NOT EXISTS order_idempotency_keys (
    user_id bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    status integer NOT NULL,
    body jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE INDEX IF NOT EXISTS order_idempotency_keys_expires_at_idx ON order_idempotency_keys (expires_at);
