ALTER TABLE orders DROP COLUMN IF EXISTS payment_reference;
