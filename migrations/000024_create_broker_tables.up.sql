-- Durable readers of the event outboxes (src/realtime/consumers.ts): each keeps its position
-- in an outbox's delivery order, (xid, id), moved on only after what precedes it was handed
-- over (the broker relay: after the broker confirmed it). While a reader is in use, pruning
-- never deletes past its position.
CREATE TABLE IF NOT EXISTS outbox_cursors (
    consumer text NOT NULL,
    outbox text NOT NULL,
    xid xid8 NOT NULL,
    id bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, outbox)
);

-- The commands taken from the broker's command queue (src/broker/commands.ts), one row per
-- message id, written in the transaction of the command's change: a redelivered message
-- finds its row and is acknowledged without being applied again.
CREATE TABLE IF NOT EXISTS broker_commands (
    message_id text PRIMARY KEY,
    type text NOT NULL,
    user_id bigint,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS broker_commands_received_at_idx ON broker_commands (received_at);
