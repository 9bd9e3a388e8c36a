//! Machine learning in the loop (issue #4), built up kernel by kernel. What is here so far:
//!
//! - [`labels`]: forward-return labels emitted only once known (at the bar `h` bars later);
//! - [`walk_forward`]: purged and embargoed k-fold splits (López de Prado) over samples whose
//!   labels span time, and the walk-forward rule "train on labels known by the retrain bar";
//! - [`drift`]: a per-feature KL-divergence monitor against a training reference, O(1) per bar;
//! - [`selection`]: feature rankings by mutual information and ANOVA F, combined into one rank;
//! - [`stacking`]: random forest, logistic regression, decision tree and k-NN (smartcore) under a
//!   logistic meta-learner fed their purged out-of-fold probabilities; scores (accuracy, ROC AUC,
//!   log loss, Brier, hit rate) and the majority-class baseline.
//!
//! - [`registry`]: models with their metadata on the filesystem, time-to-live 30 days;
//! - [`online`]: the per-ticker walk-forward model behind `[model] kind = "ml"` (the signal
//!   slot): labels → drift → predict with the model trained earlier → retrain when due.
//!
//! Not here yet: pooled (cross-ticker) training, training on its own thread in live runs, the
//! `ml_metrics` outputs and report, the registry wired to runs, the selection in the loop.

pub mod drift;
pub mod labels;
pub mod online;
pub mod registry;
pub mod selection;
pub mod stacking;
pub mod walk_forward;
