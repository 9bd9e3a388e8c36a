//! Quarantine records: why a bar or a source row was kept out (or only flagged), where it came
//! from. Sources reject rows they cannot read and the quality operator rejects bars, so the
//! vocabulary sits below both.

use serde::{Deserialize, Serialize};

use crate::time::EventTime;

/// Why a bar (or a source row) went to quarantine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A price or volume field is empty or not a number.
    MissingField,
    /// A price is NaN or infinite.
    NonFinite,
    /// A price is zero or negative.
    NonPositivePrice,
    /// Open or close outside [low, high].
    OhlcInconsistent,
    /// Volume below zero or not finite.
    BadVolume,
    /// Same time as the previous bar of the ticker.
    DuplicateTime,
    /// Earlier than the previous bar of the ticker.
    OutOfOrder,
    /// Sessions missing before this bar (flag).
    Gap,
    /// Close-to-close move beyond `max_move` (flag or reject).
    Outlier,
    /// A source row that could not be parsed.
    Unparseable,
    /// A ticker that is not part of the run.
    UnknownTicker,
    /// A streamed bar whose time the run had already passed (the feed sent it out of order).
    Late,
    /// A close more than `max_jump` times (or less than 1/`max_jump` of) the previous close,
    /// not confirmed by the next bar: impossible on its face.
    Implausible,
}

impl Reason {
    /// The snake_case name used in outputs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingField => "missing_field",
            Reason::NonFinite => "non_finite",
            Reason::NonPositivePrice => "non_positive_price",
            Reason::OhlcInconsistent => "ohlc_inconsistent",
            Reason::BadVolume => "bad_volume",
            Reason::DuplicateTime => "duplicate_time",
            Reason::OutOfOrder => "out_of_order",
            Reason::Gap => "gap",
            Reason::Outlier => "outlier",
            Reason::Unparseable => "unparseable",
            Reason::UnknownTicker => "unknown_ticker",
            Reason::Late => "late",
            Reason::Implausible => "implausible",
        }
    }
}

/// Whether the bar was kept out of the graph or only flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Quarantined: downstream never sees it.
    Rejected,
    /// Recorded, and the bar flows on.
    Flagged,
}

impl Action {
    /// The lowercase name tables, metric labels and reports use.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Rejected => "rejected",
            Action::Flagged => "flagged",
        }
    }
}

/// One quarantine record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// Ticker name as found in the input.
    pub ticker: String,
    /// Event time, when known.
    pub ts: Option<EventTime>,
    /// Rule that fired.
    pub reason: Reason,
    /// Rejected or flagged.
    pub action: Action,
    /// Where and what: file and line for source rows, the offending values for bars.
    pub detail: String,
    /// The input it came in, one per rejected message or row: a stream entry id, a
    /// `file:line`, or empty when the source has no finer identity. Part of a quarantine row's
    /// key, so the same bad bar sent twice leaves two rows, and the same message redelivered
    /// after a crash still one.
    pub origin: String,
}
