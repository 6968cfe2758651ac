ALTER TABLE product_events_pruned DROP COLUMN IF EXISTS max_id;
ALTER TABLE product_events_pruned DROP COLUMN IF EXISTS up_to_xid;
ALTER TABLE movie_events_pruned DROP COLUMN IF EXISTS max_id;
ALTER TABLE movie_events_pruned DROP COLUMN IF EXISTS up_to_xid;
DROP INDEX IF EXISTS product_events_xid_id_idx;
ALTER TABLE product_events DROP COLUMN IF EXISTS xid;
DROP INDEX IF EXISTS movie_events_xid_id_idx;
ALTER TABLE movie_events DROP COLUMN IF EXISTS xid;
