-- Equity of every run, backtest or live, one row per event time: cash, the positions marked at
-- that time's closes, their sum, and how many positions are open. The dashboard draws a run's
-- equity curve and drawdown from it; `runs/<id>/equity.parquet` holds the same rows for a
-- backtest folder. A live run writes a time's row in the transaction that commits the time; a
-- replay after a restart writes the same row again, which the key makes a no-op.
CREATE TABLE IF NOT EXISTS equity (
    run_id          TEXT             NOT NULL,
    time            TIMESTAMPTZ      NOT NULL,
    cash            DOUBLE PRECISION NOT NULL,
    positions_value DOUBLE PRECISION NOT NULL,
    equity          DOUBLE PRECISION NOT NULL,
    open_positions  BIGINT           NOT NULL,
    PRIMARY KEY (run_id, time)
);
GRANT SELECT, INSERT, UPDATE, DELETE ON equity TO fdp_writer;
