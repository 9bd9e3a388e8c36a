-- The model registry of streaming runs (issue #4): every trained model with its metadata, kept
-- for the pipeline's `ttl_days` (the run deletes older rows when it starts).
CREATE TABLE IF NOT EXISTS ml_models (
    run_id      text        NOT NULL,
    model_id    text        NOT NULL,
    ticker      text        NOT NULL,
    trained_at  timestamptz NOT NULL,
    meta        jsonb       NOT NULL,
    model       bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, model_id)
);
CREATE INDEX IF NOT EXISTS ml_models_created ON ml_models (created_at);

-- Drift events (one per ticker, bar and feature): each first insert also raises a `drift_alert`
-- audit event, so a replayed step cannot alert twice.
CREATE TABLE IF NOT EXISTS drift_events (
    run_id   text        NOT NULL,
    ticker   text        NOT NULL,
    time     timestamptz NOT NULL,
    feature  text        NOT NULL,
    kl       float8      NOT NULL,
    PRIMARY KEY (run_id, ticker, time, feature)
);
