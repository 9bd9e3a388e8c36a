//! Intake: what a worker does with a read before anything reaches the graph. Each message is
//! decoded and checked (malformed ones and unknown tickers go to the dead-letter stream), a work
//! item's bars are loaded (a failing one is retried, then dead-lettered), bars older than the
//! floor are quarantined as `late`, redeliveries of committed bars are acknowledged without
//! effect, the rest is handed to the worker's recorder and fed, and completed cycles and
//! watermarks raise the shared floor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::bar::{Bar, BarBatch, Tickers, origin_of};
use crate::reject::{Action, Reason, Reject};
use crate::sinks::postgres::{self, StoredBar};
use crate::sources::redis_stream::{Entry, Work, decode};
use crate::time::{EventTime, event_time, timely_time};

use super::StreamRunError;
use super::worker::{Feed, InFlight, WorkerCtx};

impl WorkerCtx {
    /// Decodes a read: dead-letters what cannot be processed, loads work items, hands the bars to
    /// the recorder, and returns them by time with the rejects to feed.
    pub(super) fn take(
        &self,
        feed: &mut Feed,
        entries: Vec<Entry>,
        cap: u64,
    ) -> Result<(BTreeMap<u64, BarBatch>, Vec<Reject>), StreamRunError> {
        let o = &self.opts;
        let m = &o.metrics;
        let tickers: &Tickers = &self.spec.tickers;
        let mut out: BTreeMap<u64, BarBatch> = BTreeMap::new();
        let mut rejects = Vec::new();
        let mut stored: Vec<StoredBar> = Vec::new();
        let mut floor = EventTime::MIN;
        let mut done_cycles: Vec<(u64, u64, String, EventTime)> = Vec::new();
        // Watermarks and redeliveries of committed bars have no effect left to commit: they are
        // acknowledged together at the end of the read.
        let mut no_effect: Vec<String> = Vec::new();
        let unknown = |t: &str| format!("unknown ticker {t:?}: not in the pipeline's universe");
        for e in entries {
            m.messages.fetch_add(1, Ordering::Relaxed);
            // The stream id names the message from its XADD to its acknowledgement.
            let _span = tracing::debug_span!("message", stream_id = %e.id).entered();
            let work = match decode(&e).and_then(|w| {
                w.check_times(e.added_ms(), o.max_ahead)?;
                Ok(w)
            }) {
                Ok(w) => w,
                Err(err) => {
                    self.dead(feed, &e, &err)?;
                    continue;
                }
            };
            tracing::debug!(work = ?work, "read");
            // Only a message that passed every check moves the floor (an unknown ticker's bar
            // does not: see below).
            match work {
                Work::Watermark { ts } => {
                    floor = floor.max(ts);
                    m.acked.fetch_add(1, Ordering::Relaxed);
                    no_effect.push(e.id);
                }
                Work::Bar {
                    ticker,
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                } => {
                    let Some(id) = tickers.id(&ticker) else {
                        self.dead(feed, &e, &unknown(&ticker))?;
                        continue;
                    };
                    floor = floor.max(ts);
                    if ts <= self.history.committed && self.history.ids.contains(&e.id) {
                        m.redelivered.fetch_add(1, Ordering::Relaxed);
                        no_effect.push(e.id);
                        continue;
                    }
                    let bar = Bar {
                        ticker: id,
                        ts,
                        open,
                        high,
                        low,
                        close,
                        volume,
                    };
                    if timely_time(ts) < cap {
                        rejects.push(Reject {
                            ticker,
                            ts: Some(ts),
                            reason: Reason::Late,
                            action: Action::Rejected,
                            detail: format!(
                                "stream entry {}: bar at {ts} arrived after the run passed {}",
                                e.id,
                                event_time(cap)
                            ),
                            origin: e.id.clone(),
                        });
                        feed.in_flight.push(InFlight {
                            id: e.id.clone(),
                            ts: event_time(cap),
                            added_ms: e.added_ms(),
                            bars: 0,
                        });
                        continue;
                    }
                    stored.push(StoredBar {
                        ticker,
                        bar,
                        stream_id: e.id.clone(),
                    });
                    out.entry(timely_time(ts))
                        .or_default()
                        .push_from_entry(bar, origin_of(&e.id));
                    let added_ms = e.added_ms();
                    feed.in_flight.push(InFlight {
                        id: e.id,
                        ts,
                        added_ms,
                        bars: 1,
                    });
                }
                Work::Ticker {
                    ticker,
                    cycle,
                    of,
                    floor: from,
                    until,
                } => {
                    if tickers.id(&ticker).is_none() {
                        self.dead(feed, &e, &unknown(&ticker))?;
                        done_cycles.push((cycle, of, ticker, until));
                        continue;
                    }
                    floor = floor.max(from);
                    let lo = from.max(self.history.committed.saturating_add(1));
                    match self.load_item(&ticker) {
                        Ok((bars, source_rejects)) => {
                            let mut last = EventTime::MIN;
                            let mut n = 0;
                            for b in bars.iter().filter(|b| b.ts >= lo && b.ts <= until) {
                                if timely_time(b.ts) < cap {
                                    continue;
                                }
                                stored.push(StoredBar {
                                    ticker: ticker.clone(),
                                    bar: b,
                                    stream_id: e.id.clone(),
                                });
                                out.entry(timely_time(b.ts))
                                    .or_default()
                                    .push_from_entry(b, origin_of(&e.id));
                                last = last.max(b.ts);
                                n += 1;
                            }
                            rejects.extend(
                                source_rejects
                                    .into_iter()
                                    .filter(|r| r.ts.is_none_or(|t| t >= lo && t <= until)),
                            );
                            m.tickers.fetch_add(1, Ordering::Relaxed);
                            feed.retrying.remove(&e.id);
                            feed.in_flight.push(InFlight {
                                id: e.id.clone(),
                                ts: if n == 0 { event_time(cap) } else { last },
                                added_ms: e.added_ms(),
                                bars: n,
                            });
                            done_cycles.push((cycle, of, ticker, until));
                        }
                        Err(err) => {
                            let n = feed.redis.fail(&feed.keys, &e.id)?;
                            tracing::warn!(id = %e.id, failures = n, error = %err, "work item failed");
                            if n < o.max_failures {
                                feed.retrying.insert(e.id.clone());
                            } else {
                                feed.retrying.remove(&e.id);
                                self.dead(feed, &e, &format!("failed {n} times; last: {err}"))?;
                                done_cycles.push((cycle, of, ticker, until));
                            }
                        }
                    }
                }
            }
        }
        // Recorded in the background while they are fed: the worker's input holds at the
        // earliest of them until they are durable (see `super::recorder`), so neither a raised
        // floor nor another worker lets the frontier pass a bar that is not recorded.
        feed.recorder.record(stored)?;
        for (cycle, of, ticker, until) in done_cycles {
            if feed.redis.finish_item(&feed.keys, cycle, &ticker)? >= of {
                floor = floor.max(until.saturating_add(1));
            }
        }
        if floor > EventTime::MIN {
            feed.redis.raise_floor(&feed.keys, floor)?;
        }
        let ids: Vec<&str> = no_effect.iter().map(String::as_str).collect();
        feed.redis.ack(&feed.keys, &ids)?;
        Ok((out, rejects))
    }

    /// Loads a ticker's bars on a helper thread, giving up after the item timeout.
    fn load_item(&self, ticker: &str) -> Result<(BarBatch, Vec<Reject>), String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let source = Arc::clone(&self.source);
        let tickers = Arc::clone(&self.spec.tickers);
        let name = ticker.to_string();
        std::thread::Builder::new()
            .name("fdp-load".into())
            .spawn(move || {
                let _ = tx.send(
                    source
                        .load_ticker(&name, &tickers)
                        .map_err(|e| e.to_string()),
                );
            })
            .map_err(|e| e.to_string())?;
        match rx.recv_timeout(self.opts.item_timeout) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "loading {ticker} took longer than {:?}",
                self.opts.item_timeout
            )),
        }
    }

    fn dead(&self, feed: &mut Feed, e: &Entry, error: &str) -> Result<(), StreamRunError> {
        tracing::warn!(id = %e.id, error, "dead letter");
        // One alert per run within the dedup window, however many letters follow.
        crate::alert::raise(
            format!("run:{}:dead_letter", self.opts.run_id),
            crate::alert::Severity::Warning,
            format!("run {}: a message was dead-lettered", self.opts.run_id),
            format!(
                "stream entry {}: {}",
                e.id,
                crate::sources::redis_stream::bounded(error)
            ),
        );
        feed.redis
            .dead_letter(&feed.keys, e, &feed.consumer, error)?;
        self.opts
            .metrics
            .dead_letters
            .fetch_add(1, Ordering::Relaxed);
        let fields = serde_json::to_string(&e.fields).unwrap_or_default();
        let data = serde_json::json!({
            "run_id": self.opts.run_id,
            "stream_id": e.id,
            "error": crate::sources::redis_stream::bounded(error),
            "consumer": feed.consumer,
            "fields": crate::sources::redis_stream::bounded(&fields),
        });
        feed.db.retry("audit", |rt, c| {
            rt.block_on(postgres::audit(c, "dead_letter", &data))
        })?;
        Ok(())
    }
}
