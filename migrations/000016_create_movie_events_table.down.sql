DROP TABLE IF EXISTS movie_events;
