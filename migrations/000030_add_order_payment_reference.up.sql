-- The reference an order's payment calls carry, and the root of their idempotency keys
-- (src/orders/workflow.ts). Built from the order id, they were unique in one database only:
-- another installation on the same provider account, or this one restored from a backup,
-- would send keys the provider had seen, and get another order's charge back as its own.
-- A new order's is random; an order placed before keeps the keys it may already have sent.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS payment_reference text;
UPDATE orders SET payment_reference = 'order-' || id WHERE payment_reference IS NULL;
ALTER TABLE orders ALTER COLUMN payment_reference SET DEFAULT 'order-' || gen_random_uuid();
ALTER TABLE orders ALTER COLUMN payment_reference SET NOT NULL;
