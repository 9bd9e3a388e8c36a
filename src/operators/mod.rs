//! Operators of the graph. Each file holds one stage: its kernel (plain arithmetic, unit-tested
//! beside it) and a thin timely adapter, an extension trait on the stream.
//!
//! Per-ticker stages see their input exchanged by ticker (the quality gate, [`keyed::by_time`])
//! and then in time order as it arrives ([`keyed::in_order`]: features, drift, signal); the
//! portfolio stage (risk, sizing, broker) runs on worker 0 for a time once the frontier has passed
//! it.

pub mod asof;
pub mod benchmark;
pub mod drift;
pub mod exposure;
pub mod feature_cache;
pub mod features;
pub mod indicators;
pub mod keyed;
pub mod ml;
pub mod portfolio;
pub mod quality;
pub mod risk;
pub mod signal;
pub mod sweep;
