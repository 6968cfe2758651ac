-- Greenlight's own tuning. GIN queues new entries in a pending list that every search reads
-- in full until VACUUM (or the list's size limit, 4 MB by default) merges it into the index.
-- On a freshly filled movies table, never vacuumed nor analysed, that list made the planner
-- prefer movies_genres_idx and a search took 0.8 ms instead of 0.15 ms. At 64 kB (the
-- minimum) the inserting sessions merge it often and in small batches, so searches stay
-- fast; turning the list off altogether (fastupdate = off) cost a third of the insert rate,
-- every insert then contending for the few pages of the popular genres.
ALTER INDEX movies_title_idx SET (gin_pending_list_limit = 64);
ALTER INDEX movies_genres_idx SET (gin_pending_list_limit = 64);
ALTER INDEX movies_title_genres_idx SET (gin_pending_list_limit = 64);
-- Entries already pending are merged now rather than at the next VACUUM.
SELECT gin_clean_pending_list('movies_title_idx'::regclass);
SELECT gin_clean_pending_list('movies_genres_idx'::regclass);
SELECT gin_clean_pending_list('movies_title_genres_idx'::regclass);
