DROP INDEX IF EXISTS movies_title_order_idx;
DROP INDEX IF EXISTS movies_year_idx;
