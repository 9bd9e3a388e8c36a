//! Integration tests: one crate (each file under `tests/` would link the whole tree again).

mod alerts;
mod browser;
mod cli;
mod common;
mod dashboard;
mod determinism;
mod drift;
mod exposure;
mod feature_cache;
mod fundamentals;
mod fundamentals_fetch;
mod fuzz;
mod golden_features;
mod health;
mod layering;
mod lookahead;
mod ml;
mod postgres;
mod properties;
mod provider_controls;
mod provider_live;
mod providers;
mod quality_quirks;
mod reference_backtest;
mod streaming;
