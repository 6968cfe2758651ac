ALTER TABLE order_events DROP COLUMN IF EXISTS trace_context;
ALTER TABLE product_events DROP COLUMN IF EXISTS trace_context;
ALTER TABLE movie_events DROP COLUMN IF EXISTS trace_context;
