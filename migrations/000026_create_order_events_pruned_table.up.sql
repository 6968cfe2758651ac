-- What pruning removed from the order_events outbox (000023), as movie_events_pruned and
-- product_events_pruned (000016, 000020, 000021) record it for theirs: up_to is the id of the
-- last event pruned in delivery order and up_to_xid its transaction; max_id is the highest
-- event id ever pruned. A client resuming from before them is told of the gap.
CREATE TABLE IF NOT EXISTS order_events_pruned (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    up_to bigint NOT NULL,
    up_to_xid xid8 NOT NULL DEFAULT '0',
    max_id bigint NOT NULL
);

INSERT INTO order_events_pruned (up_to, max_id) VALUES (0, 0) ON CONFLICT DO NOTHING;
