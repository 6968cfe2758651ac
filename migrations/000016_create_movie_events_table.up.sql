CREATE TABLE IF NOT EXISTS movie_events (
    id bigserial PRIMARY KEY,
    created_at timestamp(0) with time zone NOT NULL DEFAULT NOW(),
    type text NOT NULL,
    movie_id bigint NOT NULL,
    payload jsonb NOT NULL
);

CREATE INDEX IF NOT EXISTS movie_events_created_at_idx ON movie_events (created_at);

-- The highest event id ever pruned: a client resuming from an id below it has missed events
-- (rolled-back changes also leave holes in the ids, so a hole alone proves nothing).
CREATE TABLE IF NOT EXISTS movie_events_pruned (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    up_to bigint NOT NULL
);

INSERT INTO movie_events_pruned (up_to) VALUES (0) ON CONFLICT DO NOTHING;
