DROP TABLE IF EXISTS order_events_pruned;
