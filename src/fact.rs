//! Dated facts (fundamentals, sentiment): what the fundamentals source reads and the as-of join
//! operator consumes, kept below both.

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
