DROP TABLE IF EXISTS product_events_pruned;
DROP TABLE IF EXISTS product_events;
