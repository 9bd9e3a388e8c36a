//! Timing of the graph's stages for the metrics, kept apart from the decisions: an operator asks
//! its [`Meter`] for a [`Started`] before its work and hands it back with the [`Stage`] after it,
//! and gets nothing it could decide on (the reading is opaque); the [`Observer`] behind the meter
//! (a run's Prometheus histograms) sees the seconds. With no observer no clock is read.

use std::sync::Arc;
use std::time::Instant;

/// A timed stage of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The features operator computing one event time's batches.
    Features,
    /// The model operator predicting (and, for an ensemble, retraining) over its ready times.
    Predict,
}

impl Stage {
    /// The label value in the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Features => "features",
            Stage::Predict => "predict",
        }
    }
}

/// Receives the seconds a stage's work took (from every worker thread).
pub trait Observer: Send + Sync {
    /// One piece of work of `stage` took `seconds`.
    fn observe(&self, stage: Stage, seconds: f64);
}

/// A stage's handle on its run's observer; the default observes nothing.
#[derive(Clone, Default)]
pub struct Meter(Option<Arc<dyn Observer>>);

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Meter(observed)"
        } else {
            "Meter(off)"
        })
    }
}

/// When a piece of work started (opaque).
#[derive(Debug)]
pub struct Started(Option<Instant>);

impl Meter {
    /// A meter reporting to `observer`.
    pub fn new(observer: Arc<dyn Observer>) -> Self {
        Meter(Some(observer))
    }

    /// Marks the start of a piece of work.
    pub fn start(&self) -> Started {
        Started(self.0.as_ref().map(|_| Instant::now()))
    }

    /// Reports the work begun at `started` as one observation of `stage`.
    pub fn stop(&self, started: Started, stage: Stage) {
        if let (Some(o), Some(t)) = (&self.0, started.0) {
            o.observe(stage, t.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Seen(Mutex<Vec<(Stage, f64)>>);

    impl Observer for Seen {
        fn observe(&self, stage: Stage, seconds: f64) {
            if let Ok(mut v) = self.0.lock() {
                v.push((stage, seconds));
            }
        }
    }

    #[test]
    fn an_observed_meter_reports_each_stop_and_an_unobserved_one_reads_no_clock() {
        let seen = Arc::new(Seen::default());
        let m = Meter::new(seen.clone());
        let s = m.start();
        std::thread::sleep(std::time::Duration::from_millis(2));
        m.stop(s, Stage::Predict);
        let v = seen.0.lock().map(|v| v.clone()).unwrap_or_default();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].0, Stage::Predict);
        assert!(v[0].1 >= 0.002, "{v:?}");
        let off = Meter::default();
        assert!(off.start().0.is_none());
    }
}
