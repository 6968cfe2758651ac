-- Greenlight's own index (the book's columns and constraints are untouched): answers a
-- list filtered by title words and genres together inside one GIN index, where the two
-- single-column indexes leave PostgreSQL rechecking the title of every genre match.
CREATE INDEX IF NOT EXISTS movies_title_genres_idx ON movies USING GIN (to_tsvector('simple', title), genres);
