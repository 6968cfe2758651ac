DROP TABLE IF EXISTS order_idempotency_keys;
DROP TABLE IF EXISTS order_events;
DROP TABLE IF EXISTS order_history;
DROP TABLE IF EXISTS order_items;
DROP TABLE IF EXISTS orders;
DROP FUNCTION IF EXISTS orders_check_transition();
DROP TABLE IF EXISTS order_transitions;
