-- The callback service (seed 003). callback_objects holds the online objects and when they
-- were last seen; the sweep deletes rows older than the TTL through the last_seen index.
CREATE TABLE IF NOT EXISTS callback_objects (
    object_id bigint PRIMARY KEY,
    last_seen timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS callback_objects_last_seen_idx ON callback_objects (last_seen);

-- The durable intake: one row per accepted callback (its distinct ids and arrival time),
-- written before the client gets its 200 and deleted once every id is resolved. Workers
-- claim rows with FOR UPDATE SKIP LOCKED and a lease (claimed_until): a worker that dies
-- leaves its rows to be claimed again when the lease runs out.
CREATE TABLE IF NOT EXISTS callback_batches (
    id bigserial PRIMARY KEY,
    object_ids bigint[] NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    attempts integer NOT NULL DEFAULT 0
);
