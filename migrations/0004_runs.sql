-- One run id, one pipeline, one process at a time.
--
-- `runs`: the pipeline (name and a checksum of its file) a run id belongs to. A backtest or a live
-- run writing under a run id that another pipeline already wrote is refused, so a run's rows are
-- never a mixture of two pipelines.
--
-- `run_leases`: `fdp run` holds a PostgreSQL advisory lock on its run id for its whole life (a
-- second process with the same run id refuses to start), and bumps `epoch` when it takes the
-- lease. Every commit checks, in its own transaction, that the epoch is still its own: a process
-- that lost its lease to a newer one (its lock's connection died) can no longer commit.
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    pipeline    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS run_leases (
    run_id      TEXT PRIMARY KEY,
    epoch       BIGINT NOT NULL,
    holder      TEXT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
