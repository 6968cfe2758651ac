DROP TABLE IF EXISTS broker_commands;
DROP TABLE IF EXISTS outbox_cursors;
