-- Back to one row per message id: of the ids several users sent, the first row is kept.
DELETE FROM broker_commands AS later
USING broker_commands AS earlier
WHERE later.message_id = earlier.message_id
  AND (later.received_at, later.user_id) > (earlier.received_at, earlier.user_id);

ALTER TABLE broker_commands DROP CONSTRAINT IF EXISTS broker_commands_pkey;
ALTER TABLE broker_commands ADD PRIMARY KEY (message_id);
ALTER TABLE broker_commands ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE broker_commands DROP COLUMN IF EXISTS fingerprint;
