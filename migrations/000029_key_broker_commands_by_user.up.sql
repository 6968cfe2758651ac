-- A command's message id is its idempotency key, and as the Idempotency-Key of HTTP it belongs
-- to its sender's user: the same id from two users is two commands (src/broker/commands.ts).
-- The fingerprint of what the command carried tells a resend (acknowledged) from another
-- command under a used id (dead-lettered); rows written before have none.
ALTER TABLE broker_commands ADD COLUMN IF NOT EXISTS fingerprint bytea;

-- Every row has its user (the credential's), but the column allowed none.
DELETE FROM broker_commands WHERE user_id IS NULL;
ALTER TABLE broker_commands ALTER COLUMN user_id SET NOT NULL;

ALTER TABLE broker_commands DROP CONSTRAINT IF EXISTS broker_commands_pkey;
ALTER TABLE broker_commands ADD PRIMARY KEY (user_id, message_id);
