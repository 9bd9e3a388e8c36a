//! What the dashboard shows of a run, as SQL in two dialects: PostgreSQL over the tables every run
//! writes there (`$1` is the run id), and DataFusion over a backtest folder's Parquet files (one
//! run per folder, so no filter). Each view answers the same question with the same column names
//! wherever the data allow; where a backtest folder holds no such thing (dead letters, the audit
//! log), the view is PostgreSQL's only and a folder answers it with no rows.
//!
//! Times leave PostgreSQL as epoch seconds (`float8`) and DataFusion as `Timestamp(Second)`,
//! which [`super::table`] turns into the same epoch seconds.

/// One panel of a run's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// One row: start and final equity, maximum drawdown, counts of what the run wrote.
    Summary,
    /// The equity curve with cash and drawdown (≤ 0, from the running peak).
    Equity,
    /// Open positions with their mark and unrealized P&L.
    Positions,
    /// P&L per ticker.
    Pnl,
    /// The latest signals.
    Signals,
    /// The latest orders with their status and reason.
    Orders,
    /// Orders counted by status and reason (refusals by the rule that refused).
    Outcomes,
    /// The latest fills.
    Fills,
    /// The latest drift events.
    Drift,
    /// Out-of-sample ROC AUC per training and model (ensemble vs baseline), averaged over tickers.
    Models,
    /// Quarantined and flagged rows by reason.
    Quarantine,
    /// Dead-lettered stream messages by error (live runs).
    DeadLetters,
    /// The run's latest audit events (kill switch, dead letters, drift alerts).
    Audit,
}

impl View {
    /// Every view, in page order.
    pub const ALL: [View; 13] = [
        View::Summary,
        View::Equity,
        View::Positions,
        View::Pnl,
        View::Signals,
        View::Orders,
        View::Outcomes,
        View::Fills,
        View::Drift,
        View::Models,
        View::Quarantine,
        View::DeadLetters,
        View::Audit,
    ];

    /// The name in URLs (`/api/runs/{source}/{id}/{name}`).
    pub fn name(self) -> &'static str {
        match self {
            View::Summary => "summary",
            View::Equity => "equity",
            View::Positions => "positions",
            View::Pnl => "pnl",
            View::Signals => "signals",
            View::Orders => "orders",
            View::Outcomes => "outcomes",
            View::Fills => "fills",
            View::Drift => "drift",
            View::Models => "models",
            View::Quarantine => "quarantine",
            View::DeadLetters => "dead_letters",
            View::Audit => "audit",
        }
    }

    /// The view of that name.
    pub fn parse(name: &str) -> Option<View> {
        View::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The PostgreSQL query (`$1` = run id).
    pub fn postgres(self) -> &'static str {
        match self {
            View::Summary => {
                "WITH e AS (SELECT time, equity, open_positions, \
                        equity / max(equity) OVER (ORDER BY time) - 1 AS drawdown \
                      FROM equity WHERE run_id = $1) \
                 SELECT (SELECT equity FROM e ORDER BY time LIMIT 1) AS start_equity, \
                        (SELECT equity FROM e ORDER BY time DESC LIMIT 1) AS final_equity, \
                        (SELECT min(drawdown) FROM e) AS max_drawdown, \
                        (SELECT open_positions FROM e ORDER BY time DESC LIMIT 1) AS open_positions, \
                        (SELECT extract(epoch FROM max(time))::float8 FROM e) AS last_time, \
                        (SELECT count(*) FROM signals WHERE run_id = $1) AS signals, \
                        (SELECT count(*) FROM orders WHERE run_id = $1) AS orders, \
                        (SELECT count(*) FROM orders WHERE run_id = $1 AND status = 'refused') AS refused, \
                        (SELECT count(*) FROM fills WHERE run_id = $1) AS fills, \
                        (SELECT count(*) FROM drift_events WHERE run_id = $1) AS drift_events, \
                        (SELECT count(*) FROM quarantine WHERE run_id = $1) AS quarantined, \
                        (SELECT committed::float8 FROM stream_state WHERE run_id = $1) AS committed"
            }
            View::Equity => {
                "SELECT extract(epoch FROM time)::float8 AS time, equity, cash, \
                        equity / max(equity) OVER (ORDER BY time) - 1 AS drawdown \
                 FROM equity WHERE run_id = $1 ORDER BY time"
            }
            View::Positions => {
                "SELECT p.ticker, p.quantity, p.entry_price, b.close AS mark, \
                        (b.close - p.entry_price) * p.quantity AS unrealized_pnl, \
                        extract(epoch FROM p.time)::float8 AS since \
                 FROM (SELECT DISTINCT ON (ticker) ticker, time, quantity, entry_price \
                       FROM positions WHERE run_id = $1 ORDER BY ticker, time DESC) p \
                 LEFT JOIN LATERAL (SELECT close FROM bars \
                       WHERE run_id = $1 AND ticker = p.ticker ORDER BY time DESC LIMIT 1) b ON true \
                 WHERE p.quantity <> 0 ORDER BY p.ticker"
            }
            // Realized: the fills' cash flows with the open position valued at its entry price;
            // unrealized: the open position from its entry price to the last recorded close
            // (unknown, so null, when the run recorded no bars, as a backtest written with
            // --database-url).
            View::Pnl => {
                "WITH f AS (SELECT ticker, count(*) AS fills, \
                        sum(CASE WHEN side = 'buy' THEN quantity ELSE -quantity END) AS position, \
                        sum(CASE WHEN side = 'buy' THEN -quantity * price ELSE quantity * price END) AS cash_flow, \
                        sum(commission) AS commission \
                      FROM fills WHERE run_id = $1 GROUP BY ticker), \
                 p AS (SELECT DISTINCT ON (ticker) ticker, entry_price FROM positions \
                       WHERE run_id = $1 ORDER BY ticker, time DESC), \
                 r AS (SELECT f.ticker, f.fills, f.position, b.close AS mark, f.commission, \
                        f.cash_flow - f.commission \
                          + CASE WHEN abs(f.position) < 1e-9 THEN 0 ELSE f.position * p.entry_price END AS realized, \
                        CASE WHEN abs(f.position) < 1e-9 THEN 0 ELSE f.position * (b.close - p.entry_price) END AS unrealized \
                      FROM f LEFT JOIN p ON p.ticker = f.ticker \
                      LEFT JOIN LATERAL (SELECT close FROM bars WHERE run_id = $1 AND ticker = f.ticker \
                        ORDER BY time DESC LIMIT 1) b ON true) \
                 SELECT *, realized + unrealized AS pnl FROM r ORDER BY pnl DESC NULLS LAST, ticker"
            }
            View::Signals => {
                "SELECT extract(epoch FROM time)::float8 AS time, ticker, action, confidence, predicted_return \
                 FROM signals WHERE run_id = $1 ORDER BY time DESC, ticker LIMIT 100"
            }
            View::Orders => {
                "SELECT order_id, extract(epoch FROM time)::float8 AS time, ticker, side, intent, \
                        size_fraction, status, reason \
                 FROM orders WHERE run_id = $1 ORDER BY time DESC, order_id DESC LIMIT 200"
            }
            View::Outcomes => {
                "SELECT status, reason, count(*) AS count FROM orders WHERE run_id = $1 \
                 GROUP BY status, reason ORDER BY count DESC, status, reason"
            }
            View::Fills => {
                "SELECT order_id, extract(epoch FROM time)::float8 AS time, ticker, side, quantity, price, commission \
                 FROM fills WHERE run_id = $1 ORDER BY time DESC, order_id DESC LIMIT 200"
            }
            View::Drift => {
                "SELECT extract(epoch FROM time)::float8 AS time, ticker, feature, kl \
                 FROM drift_events WHERE run_id = $1 ORDER BY time DESC, ticker, feature LIMIT 200"
            }
            View::Models => {
                "SELECT extract(epoch FROM trained_at)::float8 AS time, model, \
                        avg((metrics->>'roc_auc')::float8) AS roc_auc, count(*) AS trainings \
                 FROM ml_metrics WHERE run_id = $1 GROUP BY trained_at, model ORDER BY trained_at, model"
            }
            View::Quarantine => {
                "SELECT reason, action, count(*) AS count FROM quarantine WHERE run_id = $1 \
                 GROUP BY reason, action ORDER BY count DESC, reason, action"
            }
            View::DeadLetters => {
                "SELECT left(data->>'error', 160) AS error, count(*) AS count, \
                        extract(epoch FROM max(at))::float8 AS last_at \
                 FROM audit_log WHERE event_type = 'dead_letter' AND data->>'run_id' = $1 \
                 GROUP BY 1 ORDER BY count DESC, error"
            }
            View::Audit => {
                "SELECT seq, extract(epoch FROM at)::float8 AS at, event_type, actor, \
                        coalesce(host(origin_ip), '') AS origin, left(data::text, 300) AS data \
                 FROM audit_log WHERE data->>'run_id' = $1 ORDER BY seq DESC LIMIT 50"
            }
        }
    }

    /// The DataFusion query over a backtest folder, or the columns of an always-empty answer
    /// when a folder holds no such data.
    pub fn folder(self) -> Result<&'static str, &'static [&'static str]> {
        Ok(match self {
            View::Summary => {
                "SELECT (SELECT equity FROM equity ORDER BY time LIMIT 1) AS start_equity, \
                        (SELECT equity FROM equity ORDER BY time DESC LIMIT 1) AS final_equity, \
                        (SELECT min(drawdown) FROM equity) AS max_drawdown, \
                        (SELECT open_positions FROM equity ORDER BY time DESC LIMIT 1) AS open_positions, \
                        (SELECT max(time) FROM equity) AS last_time, \
                        (SELECT count(*) FROM signals) AS signals, \
                        (SELECT count(*) FROM orders) AS orders, \
                        (SELECT count(*) FROM orders WHERE status = 'refused') AS refused, \
                        (SELECT count(*) FROM fills) AS fills, \
                        (SELECT count(*) FROM drift) AS drift_events, \
                        (SELECT count(*) FROM quarantine) AS quarantined"
            }
            View::Equity => "SELECT time, equity, cash, drawdown FROM equity ORDER BY time",
            View::Positions => {
                "SELECT ticker, size AS quantity, entry_price, exit_price AS mark, \
                        pnl AS unrealized_pnl, entry_time AS since \
                 FROM trades WHERE open ORDER BY ticker"
            }
            View::Pnl => {
                "SELECT ticker, count(*) AS trades, \
                        sum(CASE WHEN open THEN 0 ELSE pnl END) AS realized, \
                        sum(CASE WHEN open THEN pnl ELSE 0 END) AS unrealized, \
                        sum(commission) AS commission, sum(pnl) AS pnl \
                 FROM trades GROUP BY ticker ORDER BY pnl DESC, ticker"
            }
            View::Signals => {
                "SELECT time, ticker, action, confidence, predicted_return \
                 FROM signals ORDER BY time DESC, ticker LIMIT 100"
            }
            View::Orders => {
                "SELECT order_id, time, ticker, side, intent, size_fraction, status, reason \
                 FROM orders ORDER BY time DESC, order_id DESC LIMIT 200"
            }
            View::Outcomes => {
                "SELECT status, reason, count(*) AS count FROM orders \
                 GROUP BY status, reason ORDER BY count DESC, status, reason"
            }
            View::Fills => {
                "SELECT order_id, time, ticker, side, quantity, price, commission \
                 FROM fills ORDER BY time DESC, order_id DESC LIMIT 200"
            }
            View::Drift => {
                "SELECT time, ticker, feature, kl FROM drift ORDER BY time DESC, ticker, feature LIMIT 200"
            }
            View::Models => {
                "SELECT trained_at AS time, model, \
                        avg(CASE WHEN isnan(roc_auc) THEN NULL ELSE roc_auc END) AS roc_auc, \
                        count(*) AS trainings \
                 FROM ml_metrics GROUP BY trained_at, model ORDER BY time, model"
            }
            View::Quarantine => {
                "SELECT reason, action, count(*) AS count FROM quarantine \
                 GROUP BY reason, action ORDER BY count DESC, reason, action"
            }
            View::DeadLetters => return Err(&["error", "count", "last_at"]),
            View::Audit => return Err(&["seq", "at", "event_type", "actor", "origin", "data"]),
        })
    }
}

/// The runs PostgreSQL holds, newest first.
pub const PG_RUNS: &str = "SELECT r.run_id, r.pipeline, extract(epoch FROM r.created_at)::float8 AS created_at, \
        (SELECT committed::float8 FROM stream_state s WHERE s.run_id = r.run_id) AS committed, \
        (SELECT equity FROM equity e WHERE e.run_id = r.run_id ORDER BY time DESC LIMIT 1) AS final_equity, \
        (SELECT count(*) FROM orders o WHERE o.run_id = r.run_id) AS orders \
 FROM runs r ORDER BY r.created_at DESC, r.run_id LIMIT 500";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_distinct() {
        for v in View::ALL {
            assert_eq!(View::parse(v.name()), Some(v));
        }
        assert_eq!(View::parse("nope"), None);
        let mut names: Vec<_> = View::ALL.iter().map(|v| v.name()).collect();
        names.dedup();
        assert_eq!(names.len(), View::ALL.len());
    }
}
