-- A movie's poster: the bytes live in the poster storage (local disk or S3) under
-- storage_key; this row says which object is current. A new upload writes a new key, so
-- replacing a poster is this row's update, atomic for readers.
CREATE TABLE IF NOT EXISTS movie_posters (
    movie_id bigint PRIMARY KEY REFERENCES movies ON DELETE CASCADE,
    storage_key text NOT NULL UNIQUE,
    content_type text NOT NULL,
    size bigint NOT NULL CHECK (size > 0),
    -- hex sha256 of the bytes, computed while they were streamed in
    etag text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Stored objects no row refers to any more, to be deleted from the storage. Filled by the
-- trigger below in the same transaction that drops or replaces the row (including the
-- cascade of a movie's deletion), so an object is never forgotten; emptied by the app,
-- which retries the ones whose deletion failed.
CREATE TABLE IF NOT EXISTS poster_deletions (
    storage_key text PRIMARY KEY,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error text
);

CREATE INDEX IF NOT EXISTS poster_deletions_next_attempt_idx ON poster_deletions (next_attempt_at);

CREATE OR REPLACE FUNCTION movie_posters_record_deletion() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.storage_key <> NEW.storage_key THEN
        INSERT INTO poster_deletions (storage_key) VALUES (OLD.storage_key)
        ON CONFLICT (storage_key) DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER movie_posters_record_deletion
    AFTER UPDATE OR DELETE ON movie_posters
    FOR EACH ROW EXECUTE FUNCTION movie_posters_record_deletion();
