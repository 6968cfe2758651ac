-- The W3C trace context (traceparent, tracestate) of the change that wrote each event, when it
-- was traced: the broker relay sends it in the message's headers, so a consumer's trace
-- continues the writer's (docs/events.md). Nullable without a default: added without
-- rewriting the tables; events written untraced, or before this migration, have none.
ALTER TABLE movie_events ADD COLUMN IF NOT EXISTS trace_context jsonb;
ALTER TABLE product_events ADD COLUMN IF NOT EXISTS trace_context jsonb;
ALTER TABLE order_events ADD COLUMN IF NOT EXISTS trace_context jsonb;
