//! Commit, then acknowledge: worker 0 commits the ledger, exposure and quarantine rows the
//! frontier has passed, with the committed time, in one PostgreSQL transaction; every worker
//! acknowledges a message only once the time of its effects is committed. A crash between the
//! two leaves the message pending, and its replay is a no-op by the rows' natural keys.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::alert::{Alert, Severity};
use crate::bar::Tickers;
use crate::engine::Results;
use crate::operators::portfolio::{Ledger, OrderStatus};
use crate::sinks::postgres;
use crate::time::EventTime;

use super::StreamRunError;
use super::worker::{Feed, InFlight, WorkerCtx};

/// How often the committing worker reads the group's backlog for the gauges.
const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl WorkerCtx {
    /// Commits worker 0's results through `through` in one transaction (fenced by the lease),
    /// then publishes the committed time for the other workers.
    pub(super) fn commit(
        &self,
        feed: &mut Feed,
        results: &Results,
        through: EventTime,
    ) -> Result<(), StreamRunError> {
        let Results {
            ledger,
            quarantine,
            exposure,
        } = results;
        let o = &self.opts;
        let run_id = o.run_id.clone();
        let tickers = Arc::clone(&self.spec.tickers);
        let took = Instant::now();
        let w = feed.db.retry("commit", |rt, c| {
            let step = postgres::Step {
                tickers: &tickers,
                ledger,
                quarantine,
                exposure,
                committed: through,
                epoch: self.epoch,
            };
            rt.block_on(postgres::commit_step(c, &run_id, &step))
        })?;
        let took = took.elapsed();
        tracing::debug!(through, us = took.as_micros() as u64, "committed");
        let m = &o.metrics;
        m.commit_seconds.observe(took.as_secs_f64(), 1);
        m.update_gauges(|g| {
            if let Some(e) = ledger.equity.last() {
                g.equity = Some(e.equity);
                g.cash = Some(e.cash);
                g.open_positions = Some(e.open_positions as u64);
            }
            for (_, d) in &ledger.drifts {
                let entry = g.drift.entry(d.name.clone()).or_insert((0, 0.0));
                *entry = (entry.0 + 1, d.kl);
            }
        });
        m.commits.fetch_add(1, Ordering::Relaxed);
        m.orders.fetch_add(w.orders, Ordering::Relaxed);
        m.rejects
            .fetch_add(quarantine.len() as u64, Ordering::Relaxed);
        for q in quarantine.iter() {
            let action = q.action.as_str();
            m.count(
                "fdp_quarantine_rows_total",
                format!("reason=\"{}\",action=\"{action}\"", q.reason.as_str()),
                1,
            );
        }
        for o in &ledger.orders {
            let status = o.status.as_str();
            m.count(
                "fdp_order_outcomes_total",
                format!("status=\"{status}\""),
                1,
            );
        }
        m.count_to(
            "fdp_stage_bars_total",
            "stage=\"source\"".into(),
            m.bars.load(Ordering::Relaxed),
        );
        m.count_to(
            "fdp_stage_bars_total",
            "stage=\"quality\"".into(),
            ledger.bars,
        );
        feed.committed = feed.committed.max(through);
        feed.redis
            .publish_committed(&feed.keys, &o.run_id, feed.committed)?;
        // The group's backlog, at most once a second (two more round trips to Redis).
        if feed.backlog_at.is_none_or(|t| t.elapsed() >= BACKLOG_EVERY) {
            let pending = feed.redis.pending_count(&feed.keys)?;
            let lag = feed.redis.lag(&feed.keys)?;
            m.update_gauges(|g| {
                g.pending = Some(pending);
                g.lag = lag;
            });
            feed.backlog_at = Some(Instant::now());
        }
        // Told only once durably committed: an alert never announces what a crash undoes.
        for a in alerts_of(&o.run_id, &tickers, ledger) {
            crate::alert::raise(a.key, a.severity, a.title, a.text);
        }
        Ok(())
    }

    /// Acknowledges the messages whose effects are committed (time at or before the committed
    /// time) and observes their XADD-to-commit latency.
    pub(super) fn ack(&self, feed: &mut Feed) -> Result<(), StreamRunError> {
        let c = feed.committed;
        if feed.in_flight.iter().all(|m| m.ts > c) {
            return Ok(());
        }
        let (done, rest): (Vec<InFlight>, Vec<InFlight>) = std::mem::take(&mut feed.in_flight)
            .into_iter()
            .partition(|m| m.ts <= c);
        feed.in_flight = rest;
        let ids: Vec<&str> = done.iter().map(|m| m.id.as_str()).collect();
        feed.redis.ack(&feed.keys, &ids)?;
        let now = now_ms();
        let m = &self.opts.metrics;
        m.acked.fetch_add(done.len() as u64, Ordering::Relaxed);
        for d in &done {
            tracing::debug!(stream_id = %d.id, ts = d.ts, committed = c, "acknowledged");
            if let Some(a) = d.added_ms
                && d.bars > 0
            {
                m.observe(now.saturating_sub(a) as f64 / 1e3, d.bars);
            }
        }
        Ok(())
    }
}

/// The wall clock in milliseconds, for the XADD-to-commit latency (the stream id's time is the
/// producer's clock).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The alerts a committed step raises: one per drifted (ticker, feature), keyed so the sink
/// deduplicates repeats within its window; one critical alert when the daily loss stop refused
/// entries (how many, and from when); one when the kill switch refused them.
pub(super) fn alerts_of(run_id: &str, tickers: &Tickers, ledger: &Ledger) -> Vec<Alert> {
    let mut out = Vec::new();
    for (t, d) in &ledger.drifts {
        let ticker = tickers.name(*t);
        out.push(Alert {
            key: format!("run:{run_id}:drift:{ticker}:{}", d.name),
            severity: Severity::Warning,
            title: format!("run {run_id}: {ticker} {} drifted", d.name),
            text: format!(
                "KL divergence {:.4} at the bar of {}; the ensemble retrains on it",
                d.kl,
                crate::time::format_rfc3339(d.ts)
            ),
        });
    }
    for (reason, key, what) in [
        ("daily_loss_stop", "daily_loss_stop", "the daily loss stop"),
        ("kill_switch", "kill_refusals", "the kill switch"),
    ] {
        let refused: Vec<_> = ledger
            .orders
            .iter()
            .filter(|o| o.status == OrderStatus::Refused && o.reason == reason)
            .collect();
        if let (Some(first), Some(last)) = (refused.first(), refused.last()) {
            out.push(Alert {
                key: format!("run:{run_id}:{key}"),
                severity: Severity::Critical,
                title: format!("run {run_id}: {what} refused {} entries", refused.len()),
                text: format!(
                    "{} orders refused ({reason}) from {} to {}, last {}",
                    refused.len(),
                    crate::time::format_rfc3339(first.order.ts),
                    crate::time::format_rfc3339(last.order.ts),
                    tickers.name(last.order.ticker)
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::drift::DriftRecord;
    use crate::operators::portfolio::OrderRecord;
    use crate::order::{Order, OrderKind, OrderSide, OrderType, TimeInForce};

    fn refused(id: u64, ts: EventTime, ticker: u32, reason: &str) -> OrderRecord {
        OrderRecord {
            order: Order {
                id,
                ts,
                ticker,
                side: OrderSide::Buy,
                kind: OrderKind::Exit,
                order_type: OrderType::Market,
                tif: TimeInForce::Day,
                parent: None,
            },
            status: OrderStatus::Refused,
            reason: reason.into(),
            filled: 0.0,
        }
    }

    #[test]
    fn drift_and_the_daily_loss_stop_raise_keyed_alerts() {
        let tickers = Tickers::new(["EURUSD".to_string(), "BRK.B".to_string()]);
        let mut ledger = Ledger::default();
        assert!(alerts_of("live", &tickers, &ledger).is_empty());
        // Ids follow the names' order: 0 is BRK.B.
        ledger.drifts.push((
            0,
            DriftRecord {
                ts: 1_700_000_000,
                feature: 0,
                name: "RSI_14".into(),
                kl: 0.75,
            },
        ));
        ledger
            .orders
            .push(refused(1, 1_700_000_000, 1, "daily_loss_stop"));
        ledger
            .orders
            .push(refused(2, 1_700_086_400, 0, "daily_loss_stop"));
        ledger.orders.push(refused(3, 1_700_086_400, 1, "no_edge"));
        let a = alerts_of("live", &tickers, &ledger);
        assert_eq!(a.len(), 2, "{a:?}");
        assert_eq!(a[0].key, "run:live:drift:BRK.B:RSI_14");
        assert_eq!(a[0].severity, Severity::Warning);
        assert!(a[0].text.contains("0.7500") && a[0].text.contains("2023-11-14"));
        assert_eq!(a[1].key, "run:live:daily_loss_stop");
        assert_eq!(a[1].severity, Severity::Critical);
        assert!(a[1].title.contains("refused 2 entries"), "{}", a[1].title);
        assert!(a[1].text.ends_with("last BRK.B"), "{}", a[1].text);
    }
}
