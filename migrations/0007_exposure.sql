-- Sector exposure of every run, backtest or live.
--
-- One row per time and sector whose open positions changed: the signed value at entry prices in
-- cents and the number of open positions (zero rows when a sector's last position closed). A live
-- run writes a time's rows in the same transaction that commits the time, so what `exposure`
-- holds for a run is what its ledger holds; a replay after a restart writes the same rows again,
-- which the key makes a no-op.
CREATE TABLE IF NOT EXISTS exposure (
    run_id     TEXT   NOT NULL,
    time       TIMESTAMPTZ NOT NULL,
    sector     TEXT   NOT NULL,
    cost_cents BIGINT NOT NULL,
    positions  BIGINT NOT NULL,
    PRIMARY KEY (run_id, time, sector)
);
