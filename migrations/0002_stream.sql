-- The streaming run (`fdp run`): every bar that entered the graph (so a restarted run rebuilds its
-- state from exactly what the crashed one saw), the quarantine, and the event time through which a
-- run's decisions are committed. Natural keys make redelivered messages harmless.

CREATE TABLE IF NOT EXISTS bars (
    run_id      TEXT NOT NULL,
    ticker      TEXT NOT NULL,
    time        TIMESTAMPTZ NOT NULL,
    open        DOUBLE PRECISION NOT NULL,
    high        DOUBLE PRECISION NOT NULL,
    low         DOUBLE PRECISION NOT NULL,
    close       DOUBLE PRECISION NOT NULL,
    volume      DOUBLE PRECISION NOT NULL,
    stream_id   TEXT NOT NULL,
    PRIMARY KEY (run_id, ticker, time)
);

CREATE TABLE IF NOT EXISTS quarantine (
    run_id      TEXT NOT NULL,
    ticker      TEXT NOT NULL,
    ts          BIGINT NOT NULL,          -- event time in epoch seconds, -1 when unknown
    reason      TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (run_id, ticker, ts, reason)
);

CREATE TABLE IF NOT EXISTS stream_state (
    run_id      TEXT PRIMARY KEY,
    committed   BIGINT NOT NULL,          -- event time (epoch seconds) decided and written
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
