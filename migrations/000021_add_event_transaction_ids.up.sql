-- Each event row records the id of the transaction that wrote it (docs/decisions.md, "Change
-- streams"): readers deliver only events of transactions older than every running one, in
-- (xid, id) order, so writers no longer take a lock to commit in id order.
-- Events written before this migration committed one at a time in id order (under the old
-- outbox lock): they get xid 0, so they keep their id order and come before every new one.
-- A constant default adds the column without rewriting the table; new rows then get the
-- writing transaction's id.
ALTER TABLE movie_events ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE movie_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS movie_events_xid_id_idx ON movie_events (xid, id);

ALTER TABLE product_events ADD COLUMN IF NOT EXISTS xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE product_events ALTER COLUMN xid SET DEFAULT pg_current_xact_id();
CREATE INDEX IF NOT EXISTS product_events_xid_id_idx ON product_events (xid, id);

-- Pruning deletes a prefix of the delivery order. up_to is the id of the last event pruned in
-- that order (what a gap event reports) and up_to_xid its transaction; max_id is the highest
-- event id ever pruned. Before this migration the prefix was one of ids, all of xid 0.
ALTER TABLE movie_events_pruned ADD COLUMN IF NOT EXISTS up_to_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE movie_events_pruned ADD COLUMN IF NOT EXISTS max_id bigint;
UPDATE movie_events_pruned SET max_id = up_to WHERE max_id IS NULL;
ALTER TABLE movie_events_pruned ALTER COLUMN max_id SET NOT NULL;

ALTER TABLE product_events_pruned ADD COLUMN IF NOT EXISTS up_to_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE product_events_pruned ADD COLUMN IF NOT EXISTS max_id bigint;
UPDATE product_events_pruned SET max_id = up_to WHERE max_id IS NULL;
ALTER TABLE product_events_pruned ALTER COLUMN max_id SET NOT NULL;
