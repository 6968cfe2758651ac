DROP TABLE IF EXISTS movie_events_pruned;
DROP TABLE IF EXISTS movie_events;
