//! `[drift]`: which inputs the drift operator watches, against what reference, and when it fires.
//!
//! The drift operator serves any model: a rule strategy's users want to know when its inputs left
//! the distribution the rule was tuned on, and the ensemble retrains on the events. Without a
//! `[drift]` section a rule model runs without the operator, and an ensemble gets one implied by
//! its `drift_window` and `drift_threshold` (reference = its `min_samples`), see
//! [`super::Pipeline::drift`].

use serde::Deserialize;

/// Settings of the drift operator.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftSpec {
    /// Feature columns watched (default: the model's inputs — a crossover's two, a threshold's
    /// one, the ensemble's `inputs` or every column).
    #[serde(default)]
    pub features: Vec<String>,
    /// Bars in the recent distribution compared with the reference.
    #[serde(default = "default_window")]
    pub window: usize,
    /// Bars (with every watched value finite) the reference is fitted on: a ticker's first ones,
    /// and again the ones after each event (the new regime becomes the reference).
    #[serde(default = "default_reference")]
    pub reference: usize,
    /// Quantile bins of each feature's reference.
    #[serde(default = "default_bins")]
    pub bins: usize,
    /// `KL(recent ‖ reference)` of any watched feature above this fires an event. Under no drift
    /// the statistic sits near `(bins − 1) / (2 · window)`, which the threshold must clear.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
}

impl Default for DriftSpec {
    fn default() -> Self {
        DriftSpec {
            features: Vec::new(),
            window: default_window(),
            reference: default_reference(),
            bins: default_bins(),
            threshold: default_threshold(),
        }
    }
}

fn default_window() -> usize {
    100
}
fn default_reference() -> usize {
    250
}
fn default_bins() -> usize {
    10
}
fn default_threshold() -> f64 {
    0.25
}

impl DriftSpec {
    /// Checks the numbers: windows and bins positive and bounded (each is memory held per
    /// ticker), the threshold positive. The message starts with the offending key.
    ///
    /// # Errors
    /// The first value out of range.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v, min, max) in [
            ("window", self.window, 1, 100_000),
            ("reference", self.reference, 2, 1_000_000),
            ("bins", self.bins, 2, 1_000),
        ] {
            if !(min..=max).contains(&v) {
                return Err(format!("{name} must be in {min}..={max}, got {v}"));
            }
        }
        if self.bins > self.reference {
            return Err(format!(
                "bins ({}) must not exceed reference ({}): a bin needs training values",
                self.bins, self.reference
            ));
        }
        if !(self.threshold.is_finite() && self.threshold > 0.0) {
            return Err(format!(
                "threshold must be positive, got {}",
                self.threshold
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        assert_eq!(DriftSpec::default().validate(), Ok(()));
        let bad = |s: &str| {
            toml::from_str::<DriftSpec>(s)
                .expect("parses")
                .validate()
                .unwrap_err()
        };
        assert!(bad("window = 0").starts_with("window"));
        assert!(bad("bins = 1").starts_with("bins"));
        assert!(bad("reference = 5").starts_with("bins"));
        assert!(bad("threshold = -1.0").starts_with("threshold"));
        assert!(bad("threshold = nan").starts_with("threshold"));
        assert!(
            toml::from_str::<DriftSpec>("windw = 3").is_err(),
            "unknown key"
        );
    }
}
