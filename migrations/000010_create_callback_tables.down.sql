DROP TABLE IF EXISTS callback_batches;
DROP TABLE IF EXISTS callback_objects;
