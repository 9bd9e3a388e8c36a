//! Dated facts (fundamentals, sentiment) and the columns a pipeline asks for: what the
//! fundamentals source reads and the as-of join operator consumes, kept below both.

use serde::{Deserialize, Serialize};

use crate::bar::TickerId;
use crate::time::EventTime;

/// One fundamental or sentiment value, public from `ts` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fact {
    /// Ticker.
    pub ticker: TickerId,
    /// When it became public.
    pub ts: EventTime,
    /// Position of its column in [`FactColumns`].
    pub column: u32,
    /// The value.
    pub value: f64,
}

/// The fact columns a pipeline asks for, as `FMP_<field>` and `FINNHUB_<field>` names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FactColumns {
    /// FMP fields (ratios, key metrics, income statement, `epsGrowth`).
    pub fmp: Vec<String>,
    /// Finnhub news-sentiment fields (`companyNewsScore`, `bullishPercent`, `bearishPercent`,
    /// `buzz`, `articlesInLastWeek`, `sectorAverageNewsScore`, `sectorAverageBullishPercent`).
    pub finnhub: Vec<String>,
}

impl FactColumns {
    /// Column names, FMP first.
    pub fn names(&self) -> Vec<String> {
        self.fmp
            .iter()
            .map(|f| format!("FMP_{f}"))
            .chain(self.finnhub.iter().map(|f| format!("FINNHUB_{f}")))
            .collect()
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.fmp.len() + self.finnhub.len()
    }

    /// True when no column is asked for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
