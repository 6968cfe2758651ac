DROP INDEX IF EXISTS movies_title_genres_idx;
