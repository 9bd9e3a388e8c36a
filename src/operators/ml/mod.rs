//! Machine learning in the loop (issue #4):
//!
//! - [`labels`]: forward-return labels emitted only once known (at the bar `h` bars later);
//! - [`walk_forward`]: purged and embargoed k-fold splits (López de Prado) over samples whose
//!   labels span time, and the walk-forward rule "train on labels known by the retrain bar";
//! - [`selection`]: feature rankings by mutual information and ANOVA F, combined with the
//!   forest's importance into one rank;
//! - [`stacking`]: random forest, logistic regression, decision tree and Gaussian naive Bayes
//!   (trained by smartcore, compiled to flat arrays for prediction) under a logistic meta-learner
//!   fed their purged out-of-fold probabilities; scores (accuracy, ROC AUC, log loss, Brier, hit
//!   rate) and the majority-class baseline;
//! - [`trainer`]: the training pool that keeps training off the hot path in live runs;
//! - [`registry`]: models with their metadata on the filesystem (or PostgreSQL through
//!   [`registry::ModelStore`]), time-to-live 30 days;
//! - [`online`]: the per-ticker walk-forward model behind `[model] kind = "ensemble"` (the
//!   signal slot): labels → predict with the model trained earlier → select features, train and
//!   store when due (every `retrain_every` bars, or on an event of the drift operator,
//!   [`crate::operators::drift`]).
//!
//! Not here: pooled (cross-ticker) training; each ticker learns from its own history.

pub mod labels;
pub mod online;
pub mod registry;
pub mod selection;
pub mod stacking;
pub mod trainer;
pub mod walk_forward;
