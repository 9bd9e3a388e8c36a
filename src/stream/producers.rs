//! The producers of a live run's stream: `fdp orchestrate` adds a cycle of work items (one per
//! ticker, bars after the previous cut-off up to this one), `fdp feed` replays a pipeline's bars
//! as bar messages with a watermark after each time. Both wait while the stream is more than half
//! full of undelivered messages, so trimming never drops one.

use std::time::{Duration, Instant};

use crate::config::LoadedPipeline;
use crate::engine::EngineError;
use crate::sources::Source;
use crate::sources::redis_stream::{Conn, Keys, StreamError};
use crate::time::{EventTime, event_time};

use super::StreamRunError;

/// What `fdp orchestrate` added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cycle {
    /// Cycle number (1 for the first).
    pub cycle: u64,
    /// Work items added (one per ticker).
    pub items: u64,
    /// Bars of this cycle are after the previous cycle's cut-off and at or before this one.
    pub until: EventTime,
}

/// Adds one work item per ticker of the pipeline's universe for a new cycle whose bars run up to
/// `until` (inclusive), creating the consumer group if absent.
///
/// # Errors
/// The pipeline's source cannot be opened, or Redis fails.
pub fn orchestrate(
    p: &LoadedPipeline,
    redis_url: &str,
    prefix: &str,
    until: EventTime,
    maxlen: usize,
) -> Result<Cycle, StreamRunError> {
    let source = Source::open(p).map_err(EngineError::from)?;
    let tickers = source.tickers();
    let keys = Keys::new(prefix);
    let mut r = Conn::open(redis_url)?;
    r.ensure_group(&keys)?;
    let prev = r.last_cutoff(&keys)?;
    let floor = prev.map_or(0, |u| u.saturating_add(1));
    if until < floor {
        return Err(StreamRunError::Cutoff {
            until,
            previous: floor - 1,
        });
    }
    let cycle = r.next_cycle(&keys)?;
    let of = tickers.len() as u64;
    let messages: Vec<Vec<(&str, String)>> = tickers
        .names()
        .iter()
        .map(|t| {
            vec![
                ("kind", "ticker".to_string()),
                ("ticker", t.clone()),
                ("cycle", cycle.to_string()),
                ("of", of.to_string()),
                ("floor", floor.to_string()),
                ("until", until.to_string()),
            ]
        })
        .collect();
    for chunk in messages.chunks(1000) {
        wait_for_room(&mut r, &keys, maxlen)?;
        r.xadd_many(&keys.stream(), maxlen, chunk)?;
    }
    r.set_cutoff(&keys, until)?;
    tracing::info!(cycle, items = of, until, "cycle added");
    Ok(Cycle {
        cycle,
        items: of,
        until,
    })
}

/// Waits while more than half of `maxlen` entries are not yet delivered, so trimming never
/// removes a message nobody has read.
fn wait_for_room(r: &mut Conn, keys: &Keys, maxlen: usize) -> Result<(), StreamError> {
    while r.lag(keys)?.is_some_and(|l| l as usize > maxlen / 2) {
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Pushes the pipeline's bars into the stream as bar messages in time order, a watermark after
/// each time, at most `rate` bars per second on average when given (each time's bars in one
/// burst). Returns the bars pushed.
///
/// # Errors
/// The pipeline's source cannot be loaded, or Redis fails.
pub fn feed(
    p: &LoadedPipeline,
    redis_url: &str,
    prefix: &str,
    maxlen: usize,
    rate: Option<f64>,
) -> Result<u64, StreamRunError> {
    let source = Source::open(p).map_err(EngineError::from)?;
    let tickers = source.tickers();
    let input = source.load(0, 1, &tickers).map_err(EngineError::from)?;
    let keys = Keys::new(prefix);
    let mut r = Conn::open(redis_url)?;
    r.ensure_group(&keys)?;
    let started = Instant::now();
    let mut sent = 0u64;
    let mut pending: Vec<Vec<(&str, String)>> = Vec::new();
    // Paced, a time's bars go out together with their watermark, as a market's bars do when a
    // period closes; unpaced, in chunks of 2,000.
    for (t, batch) in &input.batches {
        for b in batch.iter() {
            pending.push(
                crate::sources::redis_stream::bar_fields(tickers.name(b.ticker), &b)
                    .into_iter()
                    .collect(),
            );
            sent += 1;
            if rate.is_none() && pending.len() >= 2000 {
                flush(&mut r, &keys, maxlen, &mut pending, rate, sent, started)?;
            }
        }
        pending.push(vec![
            ("kind", "watermark".into()),
            ("ts", (event_time(*t) + 1).to_string()),
        ]);
        if rate.is_some() {
            flush(&mut r, &keys, maxlen, &mut pending, rate, sent, started)?;
        }
    }
    flush(&mut r, &keys, maxlen, &mut pending, rate, sent, started)?;
    Ok(sent)
}

fn flush(
    r: &mut Conn,
    keys: &Keys,
    maxlen: usize,
    pending: &mut Vec<Vec<(&str, String)>>,
    rate: Option<f64>,
    sent: u64,
    started: Instant,
) -> Result<(), StreamError> {
    if let Some(rate) = rate {
        let due = Duration::from_secs_f64(sent as f64 / rate);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    wait_for_room(r, keys, maxlen)?;
    r.xadd_many(&keys.stream(), maxlen, pending)?;
    pending.clear();
    Ok(())
}
