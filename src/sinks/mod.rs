//! Sinks: where the graph's results go. Brokers execute orders; files hold a run's outputs.

pub mod alerts;
pub mod broker;
pub mod catalog;
pub mod files;
pub mod pg_copy;
pub mod pg_pipeline;
pub mod postgres;
pub mod prometheus;
pub mod recorded;
pub mod report;
pub mod run_metrics;
