-- Greenlight's own tuning. With GIN's default fastupdate, new entries wait in a pending
-- list that every search scans in full until VACUUM merges it, and a table that has not
-- been analysed yet gets planned as if the combined index were no help: a freshly filled
-- movies table was searched in 0.8 ms instead of 0.1 ms. Updating the indexes directly
-- makes each insert slightly dearer and every search fast from the first row on.
ALTER INDEX movies_title_idx SET (fastupdate = off);
ALTER INDEX movies_genres_idx SET (fastupdate = off);
ALTER INDEX movies_title_genres_idx SET (fastupdate = off);
-- Entries already pending are merged now rather than at the next VACUUM.
SELECT gin_clean_pending_list('movies_title_idx'::regclass);
SELECT gin_clean_pending_list('movies_genres_idx'::regclass);
SELECT gin_clean_pending_list('movies_title_genres_idx'::regclass);
