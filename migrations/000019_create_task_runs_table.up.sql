-- One row per run of a scheduled task (src/tasks): when, how long, how it ended. pg-boss
-- deletes its jobs after a while and keeps no duration; this is what `greenlight tasks list`
-- and the task metrics read. Pruned by the prune-task-runs task.
CREATE TABLE IF NOT EXISTS task_runs (
    id bigserial PRIMARY KEY,
    task text NOT NULL,
    started_at timestamptz NOT NULL,
    duration_ms double precision NOT NULL,
    outcome text NOT NULL CHECK (outcome IN ('succeeded', 'failed')),
    -- what the task returned (succeeded) or the error message (failed)
    result jsonb NOT NULL DEFAULT 'null',
    -- schedule, or cli:<operating-system user> for `greenlight tasks run`
    trigger text NOT NULL
);

CREATE INDEX IF NOT EXISTS task_runs_task_started_idx ON task_runs (task, started_at DESC);
