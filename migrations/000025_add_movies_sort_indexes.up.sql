-- Greenlight's own indexes (the book's columns and constraints are untouched): a page of a
-- list sorted by year or title reads its rows from an index (ties on id are sorted within the
-- few rows of one value, an incremental sort, in either direction) instead of sorting every
-- movie for each page. No index on runtime: updates that change only the runtime, the most
-- common change, stay heap-only (HOT) because no index covers that column.
CREATE INDEX IF NOT EXISTS movies_year_idx ON movies (year);
CREATE INDEX IF NOT EXISTS movies_title_order_idx ON movies (title);
