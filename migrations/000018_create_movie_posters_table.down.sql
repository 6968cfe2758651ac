DROP TABLE IF EXISTS movie_posters;
DROP FUNCTION IF EXISTS movie_posters_record_deletion();
DROP TABLE IF EXISTS poster_deletions;
