ALTER INDEX IF EXISTS movies_title_genres_idx RESET (gin_pending_list_limit);
ALTER INDEX IF EXISTS movies_genres_idx RESET (gin_pending_list_limit);
ALTER INDEX IF EXISTS movies_title_idx RESET (gin_pending_list_limit);
