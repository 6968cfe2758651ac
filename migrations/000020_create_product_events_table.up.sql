CREATE TABLE IF NOT EXISTS product_events (
    id bigserial PRIMARY KEY,
    created_at timestamp(0) with time zone NOT NULL DEFAULT NOW(),
    type text NOT NULL,
    product_id bigint NOT NULL,
    payload jsonb NOT NULL
);

CREATE INDEX IF NOT EXISTS product_events_created_at_idx ON product_events (created_at);

-- The highest event id ever pruned, as movie_events_pruned (000016) is for movie events.
CREATE TABLE IF NOT EXISTS product_events_pruned (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    up_to bigint NOT NULL
);

INSERT INTO product_events_pruned (up_to) VALUES (0) ON CONFLICT DO NOTHING;
