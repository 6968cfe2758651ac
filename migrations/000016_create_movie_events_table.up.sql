CREATE TABLE IF NOT EXISTS movie_events (
    id bigserial PRIMARY KEY,
    created_at timestamp(0) with time zone NOT NULL DEFAULT NOW(),
    type text NOT NULL,
    movie_id bigint NOT NULL,
    payload jsonb NOT NULL
);

CREATE INDEX IF NOT EXISTS movie_events_created_at_idx ON movie_events (created_at);
