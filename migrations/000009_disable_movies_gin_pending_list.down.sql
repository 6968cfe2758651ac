ALTER INDEX IF EXISTS movies_title_genres_idx RESET (fastupdate);
ALTER INDEX IF EXISTS movies_genres_idx RESET (fastupdate);
ALTER INDEX IF EXISTS movies_title_idx RESET (fastupdate);
