//! Sector exposure: per sector, the value at entry prices of the open positions and how many
//! there are, after each time whose fills changed it.
//!
//! The open positions are a collection of [`PositionDelta`]s: an entry fill inserts
//! `(ticker, cost)` (integer cents) and its exit retracts the very same record. Summing those
//! updates per sector is exact in integers, so the sums do not depend on the order the updates
//! are applied in. They are kept by [`SectorExposure`] beside the portfolio, on the worker that
//! holds it, and read off after each of its steps: a plain per-sector sum needs no join, no
//! exchange and no operator of its own (the differential join and reduce that did this before
//! cost a tenth of a two-worker run in progress tracking alone).

use serde::{Deserialize, Serialize};

use crate::bar::TickerId;
use crate::time::EventTime;

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

/// Puts exposure rows in the order of the outputs: by time, then sector.
pub fn rows(mut raw: Vec<ExposureRow>) -> Vec<ExposureRow> {
    raw.sort();
    raw
}

/// The running per-sector sums of the open positions.
#[derive(Debug, Clone, Default)]
pub struct SectorExposure {
    /// Each ticker's sector, as an index into `names` (by ticker id).
    sector_of: Vec<u32>,
    /// Sector names, sorted: the index order is the output order.
    names: Vec<String>,
    /// Per sector: signed cost in cents and open positions.
    sums: Vec<(i64, i64)>,
    /// Sectors touched at the current step, with their sums before it.
    touched: Vec<(u32, (i64, i64))>,
    /// The index of `unknown`.
    unknown: u32,
}

impl SectorExposure {
    /// Sums for these sectors, by ticker id (a ticker past the end counts as `unknown`).
    pub fn new(sectors: &[String]) -> Self {
        let mut names: Vec<String> = sectors.to_vec();
        names.push(UNKNOWN.to_string());
        names.sort();
        names.dedup();
        let index = |s: &str| names.binary_search_by(|n| n.as_str().cmp(s)).unwrap_or(0) as u32;
        let sector_of = sectors.iter().map(|s| index(s)).collect();
        let unknown = index(UNKNOWN);
        SectorExposure {
            sector_of,
            sums: vec![(0, 0); names.len()],
            names,
            touched: Vec::new(),
            unknown,
        }
    }

    fn sector(&self, ticker: TickerId) -> u32 {
        self.sector_of
            .get(ticker as usize)
            .copied()
            .unwrap_or(self.unknown)
    }

    /// Applies the position changes of the step at `ts` and appends a row for each sector whose
    /// sums they changed, in sector order. Changes that cancel (an entry and its exit at the
    /// same time) give no row; a sector whose positions all closed gives a row of zeros.
    pub fn apply(&mut self, ts: EventTime, deltas: &[PositionDelta], out: &mut Vec<ExposureRow>) {
        if deltas.is_empty() {
            return;
        }
        self.touched.clear();
        for d in deltas {
            let s = self.sector(d.ticker);
            let sum = &mut self.sums[s as usize];
            if !self.touched.iter().any(|(t, _)| *t == s) {
                self.touched.push((s, *sum));
            }
            let diff = d.diff as i64;
            sum.0 += d.cost_cents * diff;
            sum.1 += diff;
        }
        self.touched.sort_unstable_by_key(|(s, _)| *s);
        for &(s, before) in &self.touched {
            let (cost_cents, positions) = self.sums[s as usize];
            if (cost_cents, positions) != before {
                out.push(ExposureRow {
                    ts,
                    sector: self.names[s as usize].clone(),
                    cost_cents,
                    positions,
                });
            }
        }
    }
}

/// The sector of a ticker the universe names none for.
pub const UNKNOWN: &str = "unknown";

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

    fn delta(ticker: TickerId, cost_cents: i64, diff: isize) -> PositionDelta {
        PositionDelta {
            ticker,
            cost_cents,
            diff,
        }
    }

    #[test]
    fn sums_per_sector_in_sector_order_and_zero_when_all_closed() {
        // Tickers 0 and 2 are Tech, 1 is Energy, 3 has no sector.
        let sectors: Vec<String> = ["Tech", "Energy", "Tech", "unknown"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let mut x = SectorExposure::new(&sectors);
        let mut out = Vec::new();
        x.apply(
            1,
            &[delta(0, 500, 1), delta(1, -700, 1), delta(2, 300, 1)],
            &mut out,
        );
        x.apply(2, &[delta(1, -700, -1), delta(9, 100, 1)], &mut out);
        x.apply(3, &[delta(0, 500, -1)], &mut out);
        x.apply(4, &[], &mut out);
        assert_eq!(
            out,
            vec![
                row(1, "Energy", -700, 1),
                row(1, "Tech", 800, 2),
                row(2, "Energy", 0, 0),
                row(2, "unknown", 100, 1),
                row(3, "Tech", 300, 1),
            ]
        );
    }

    #[test]
    fn changes_that_cancel_within_a_step_give_no_row() {
        let sectors = vec!["Tech".to_string(), "Tech".to_string()];
        let mut x = SectorExposure::new(&sectors);
        let mut out = Vec::new();
        x.apply(1, &[delta(0, 500, 1)], &mut out);
        // The exit of ticker 0 and an entry of ticker 1 at the same cost: Tech is unchanged.
        x.apply(2, &[delta(0, 500, -1), delta(1, 500, 1)], &mut out);
        x.apply(3, &[delta(1, 500, -1), delta(1, 500, 1)], &mut out);
        assert_eq!(out, vec![row(1, "Tech", 500, 1)]);
    }

    #[test]
    fn sums_do_not_depend_on_the_order_of_a_steps_changes() {
        let sectors: Vec<String> = (0..6).map(|i| format!("S{}", i % 3)).collect();
        let deltas: Vec<PositionDelta> = (0..6)
            .map(|t| delta(t, 1_000_000_007 * (i64::from(t) - 2), 1))
            .collect();
        let mut reversed = deltas.clone();
        reversed.reverse();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        SectorExposure::new(&sectors).apply(5, &deltas, &mut a);
        SectorExposure::new(&sectors).apply(5, &reversed, &mut b);
        assert_eq!(a, b);
        assert_eq!(a.len(), 3);
    }
}
