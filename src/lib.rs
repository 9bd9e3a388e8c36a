#![warn(missing_docs)]
//! findashpro: market data in, trading decisions out, on timely dataflow.
//!
//! A tour of the layout:
//! - [`config`]: pipeline files (`pipelines/*.toml`), typed and validated, errors with line and
//!   column; the feature schema and the `[drift]` settings live here, below the operators.
//! - [`sources`]: file replay (CSV/Parquet), universe lists, the seeded synthetic generator.
//! - [`operators`]: the graph's stages, each a plain kernel plus a thin timely adapter —
//!   [`operators::quality`], [`operators::features`] (kernels in [`operators::indicators`]),
//!   [`operators::drift`] (optional), [`operators::signal`] (rule models and the ML ensemble of
//!   [`operators::ml`]), [`operators::risk`] and the [`operators::portfolio`] that applies them
//!   (and follows the benchmark, [`operators::benchmark`]):
//!   `source → quality → features → [facts] → [drift] → model → portfolio → sinks`.
//! - [`sinks`]: brokers (paper; Alpaca and IBKR through the outbox `fdp broker` sends), run outputs (Parquet, `metrics.json`), `report.html`.
//! - [`engine`]: wires the graph on timely; its one worker [`engine::Harness`] builds it, feeds
//!   it at event time and collects the results, for the backtest's file replay ([`engine::run`])
//!   and for the live run's Redis consumers ([`stream`]) alike.
//! - [`output`], [`manifest`], [`query`], [`compare`]: a backtest's folder, what made it
//!   (`run.json`, the resolved `pipeline.toml`), SQL over one or several folders, and what
//!   differs between two.
//! - [`tearsheet`]: a run's daily returns against its benchmark ([`operators::benchmark`], followed
//!   beside the portfolio), quantstats' full set of figures and the series `report.html` draws.
//! - [`frame`]: what the edges carry — Arrow record batches of bars ([`frame::Bars`]; features are
//!   a `FixedSizeList<Float64>` column beside them), Arrow IPC between processes.
//! - [`bar`], [`time`], [`calendar`], [`metrics`]: the shared vocabulary; [`meter`]: how the
//!   driver times the operators' work for `/metrics` without an operator reading a clock.
//!
//! Error policy: each module has its own `thiserror` enum naming what failed and where; bad data is
//! never an error that stops a run — it becomes a quarantine record with a reason. Only `main`
//! uses `anyhow`. Event time is the timely timestamp; nothing under `operators/` reads the clock.

pub mod alert;
pub mod backup;
pub mod bar;
pub mod bench;
pub mod bench_broker;
pub mod bench_fetch;
pub mod bench_limiter;
pub mod bench_ml;
pub mod bench_pg;
pub mod bench_stream;
pub mod bench_sweep;
pub mod broker_cmd;
pub mod calendar;
pub mod compare;
pub mod config;
pub mod engine;
pub mod fact;
pub mod fault;
pub mod features_cmd;
pub mod fetch_cmd;
pub mod frame;
pub mod http_server;
pub mod manifest;
pub mod meter;
pub mod metrics;
pub mod names;
pub mod operators;
pub mod order;
pub mod output;
pub mod query;
pub mod reject;
pub mod serve;
pub mod sinks;
pub mod sources;
pub mod stream;
pub mod sweep;
pub mod tearsheet;
pub mod time;
