//! Sector exposure as differential-dataflow collections.
//!
//! The open positions are a collection: an entry fill inserts `(ticker, cost)` ([`PositionDelta`],
//! integer cents) and its exit retracts it. That collection is joined with the ticker → sector table (from the universe file)
//! and summed per sector. Differential keeps the sums incremental and exact: at every time the
//! output holds, per sector, the value at entry prices and the number of open positions, whatever
//! order the updates arrived in and however many workers hold the keys.

use std::cell::RefCell;
use std::rc::Rc;

use differential_dataflow::AsCollection;
use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Pipeline;

use crate::bar::TickerId;
use crate::time::EventTime;

use super::keyed::{by_time, in_order};
use super::portfolio::PositionDelta;

/// Exposure of one sector after the fills at `ts`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ExposureRow {
    /// Time of the fills that changed it.
    pub ts: EventTime,
    /// Sector (`unknown` for tickers the universe gives none).
    pub sector: String,
    /// Signed value at entry prices, in cents.
    pub cost_cents: i64,
    /// Open positions.
    pub positions: i64,
}

/// Turns the sink's raw rows into one row per time and sector: the inserted value, or zero when
/// the time only retracted the sector's previous value.
pub fn rows(mut raw: Vec<ExposureRow>) -> Vec<ExposureRow> {
    raw.sort();
    let mut out: Vec<ExposureRow> = Vec::with_capacity(raw.len());
    for r in raw {
        match out.last_mut() {
            Some(last) if last.ts == r.ts && last.sector == r.sector => {
                if (r.cost_cents, r.positions) != (0, 0) {
                    *last = r;
                }
            }
            _ => out.push(r),
        }
    }
    out
}

/// Adds `(data, time, +1)` to every record, making a stream a collection of insertions.
fn stamp<'s, D: Clone + 'static>(
    s: Stream<'s, u64, Vec<D>>,
    name: &str,
) -> Stream<'s, u64, Vec<(D, u64, isize)>> {
    by_time(s, Pipeline, name, |t, items, out| {
        out.extend(items.into_iter().map(|d| (d, t, 1)))
    })
}

/// Builds the exposure dataflow: `deltas` are position changes, `sectors` the ticker → sector table
/// (sent once, at the first time). Rows land in `out` on worker 0; the returned stream (empty)
/// passes a time once its rows have landed, for a probe.
pub fn sector_exposure<'s>(
    deltas: Stream<'s, u64, Vec<PositionDelta>>,
    sectors: Stream<'s, u64, Vec<(TickerId, String)>>,
    out: Rc<RefCell<Vec<ExposureRow>>>,
) -> Stream<'s, u64, Vec<()>> {
    // The portfolio emits its deltas in time order on this worker: taken as they arrive.
    let positions = in_order(deltas, "OpenPositions", |t, items, out| {
        out.extend(
            items
                .into_iter()
                .map(|d: PositionDelta| ((d.ticker, d.cost_cents), t, d.diff)),
        );
    })
    .as_collection();
    let sectors = stamp(sectors, "StampSectors").as_collection();
    let totals = positions
        .join(sectors)
        .map(|(_ticker, (cost, sector))| (sector, cost))
        .reduce(|_sector, input, output| {
            let (mut cost, mut count) = (0i64, 0i64);
            for (c, diff) in input {
                cost += **c * *diff as i64;
                count += *diff as i64;
            }
            output.push(((cost, count), 1isize));
        });
    super::keyed::gather(totals.inner, "ExposureSink", move |data| {
        let mut out = out.borrow_mut();
        for ((sector, (cost_cents, positions)), t, diff) in data.drain(..) {
            // A retraction alone means the sector's positions all closed: record zero. An
            // insertion at the same time replaces it (see `rows`).
            let (cost_cents, positions) = if diff > 0 {
                (cost_cents, positions)
            } else {
                (0, 0)
            };
            out.push(ExposureRow {
                ts: crate::time::event_time(t),
                sector,
                cost_cents,
                positions,
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(ts: i64, sector: &str, cost_cents: i64, positions: i64) -> ExposureRow {
        ExposureRow {
            ts,
            sector: sector.into(),
            cost_cents,
            positions,
        }
    }

    #[test]
    fn a_lone_retraction_is_a_zero_and_an_insertion_wins() {
        let raw = vec![
            row(2, "A", 0, 0),
            row(1, "A", 500, 1),
            row(2, "B", 700, 2),
            row(2, "B", 0, 0),
        ];
        assert_eq!(
            rows(raw),
            vec![row(1, "A", 500, 1), row(2, "A", 0, 0), row(2, "B", 700, 2)]
        );
    }
}
