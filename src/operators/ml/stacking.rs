//! The stacking ensemble: four base models (random forest, logistic regression, decision tree,
//! k-nearest neighbours, all smartcore) and a logistic-regression meta-learner trained on the base
//! models' out-of-fold probabilities, the folds purged and embargoed ([`super::walk_forward`]).
//!
//! Every model gives the probability of the `Up` class. The forest is a regression forest on the
//! 0/1 label (its mean vote is the probability, and it has smartcore's impurity importances, which
//! the classifier lacks); logistic regression's probability comes from its coefficients; the tree
//! and k-NN have `predict_proba`. Training is seeded, so it repeats exactly. A fitted ensemble
//! serializes (serde) and loads back to identical predictions.

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::metrics::distance::euclidian::Euclidian;
use smartcore::neighbors::knn_classifier::{KNNClassifier, KNNClassifierParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

use super::walk_forward::{Span, purged_kfold};

type M = DenseMatrix<f64>;

/// Names of the base models, in the order of their probabilities.
pub const BASE_MODELS: [&str; 4] = [
    "random_forest",
    "logistic_regression",
    "decision_tree",
    "knn",
];

/// Errors of training or prediction.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// smartcore refused the data or failed.
    #[error("{model}: {message}")]
    Fit {
        /// Which model.
        model: &'static str,
        /// smartcore's message.
        message: String,
    },
    /// Too few samples, or a single class.
    #[error("cannot train: {0}")]
    Data(String),
}

fn fail(model: &'static str) -> impl Fn(smartcore::error::Failed) -> ModelError {
    move |e| ModelError::Fit {
        model,
        message: e.to_string(),
    }
}

fn matrix(rows: &[Vec<f64>]) -> Result<M, ModelError> {
    DenseMatrix::from_2d_vec(&rows.to_vec()).map_err(fail("matrix"))
}

/// The rows `idx` of `x` as a matrix.
fn gather(x: &[Vec<f64>], idx: &[usize]) -> Result<M, ModelError> {
    matrix(&idx.iter().map(|&i| x[i].clone()).collect::<Vec<_>>())
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StackingParams {
    /// Trees in the forest.
    pub trees: usize,
    /// Depth of the forest's and the tree's trees.
    pub max_depth: u16,
    /// Neighbours of k-NN.
    pub k: usize,
    /// Folds for the out-of-fold predictions.
    pub folds: usize,
    /// Samples embargoed after each test fold.
    pub embargo: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Default for StackingParams {
    fn default() -> Self {
        StackingParams {
            trees: 50,
            max_depth: 6,
            k: 15,
            folds: 5,
            embargo: 5,
            seed: 42,
        }
    }
}

/// The four fitted base models.
#[derive(Debug, Serialize, Deserialize)]
struct Bases {
    rf: RandomForestRegressor<f64, f64, M, Vec<f64>>,
    lr: LogisticRegression<f64, i32, M, Vec<i32>>,
    dt: DecisionTreeClassifier<f64, i32, M, Vec<i32>>,
    knn: KNNClassifier<f64, i32, M, Vec<i32>, Euclidian<f64>>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// `P(Up)` of a binary smartcore logistic regression, from its coefficients.
fn logistic_proba(lr: &LogisticRegression<f64, i32, M, Vec<i32>>, x: &M) -> Vec<f64> {
    let (n, p) = x.shape();
    let (w, b) = (lr.coefficients(), lr.intercept());
    (0..n)
        .map(|i| {
            let z = (0..p).map(|j| *w.get((0, j)) * *x.get((i, j))).sum::<f64>() + *b.get((0, 0));
            sigmoid(z)
        })
        .collect()
}

impl Bases {
    fn fit(x: &M, y: &[i32], p: &StackingParams) -> Result<Bases, ModelError> {
        let yf: Vec<f64> = y.iter().map(|c| f64::from(*c)).collect();
        let yv = y.to_vec();
        let rf = RandomForestRegressor::fit(
            x,
            &yf,
            RandomForestRegressorParameters::default()
                .with_n_trees(p.trees)
                .with_max_depth(p.max_depth)
                .with_seed(p.seed),
        )
        .map_err(fail("random_forest"))?;
        let lr = LogisticRegression::fit(x, &yv, LogisticRegressionParameters::default())
            .map_err(fail("logistic_regression"))?;
        let dt = DecisionTreeClassifier::fit(
            x,
            &yv,
            DecisionTreeClassifierParameters {
                max_depth: Some(p.max_depth),
                min_samples_leaf: 5,
                seed: Some(p.seed),
                ..DecisionTreeClassifierParameters::default()
            },
        )
        .map_err(fail("decision_tree"))?;
        let knn = KNNClassifier::fit(x, &yv, KNNClassifierParameters::default().with_k(p.k))
            .map_err(fail("knn"))?;
        Ok(Bases { rf, lr, dt, knn })
    }

    /// One row per sample: `P(Up)` of each base model.
    fn proba(&self, x: &M) -> Result<Vec<[f64; 4]>, ModelError> {
        let n = x.shape().0;
        let rf = self.rf.predict(x).map_err(fail("random_forest"))?;
        let lr = logistic_proba(&self.lr, x);
        let dt = self.dt.predict_proba(x).map_err(fail("decision_tree"))?;
        let knn = self.knn.predict_proba(x).map_err(fail("knn"))?;
        Ok((0..n)
            .map(|i| {
                let last = |row: &[f64]| row.last().copied().unwrap_or(0.5);
                [
                    rf[i].clamp(0.0, 1.0),
                    lr[i],
                    *dt.get((i, dt.shape().1 - 1)),
                    knn.get(i).map_or(0.5, |r| last(r)),
                ]
            })
            .collect())
    }
}

/// Out-of-sample predictions gathered while training, for the metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OutOfFold {
    /// Sample indices that got an out-of-fold prediction.
    pub rows: Vec<usize>,
    /// Per base model, `P(Up)` for those rows.
    pub base: Vec<Vec<f64>>,
    /// The ensemble's `P(Up)` for those rows (its meta-learner itself cross-validated).
    pub ensemble: Vec<f64>,
}

/// A fitted stacking ensemble.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stacking {
    bases: Bases,
    meta: LogisticRegression<f64, i32, M, Vec<i32>>,
    /// The settings it was trained with.
    pub params: StackingParams,
}

impl Stacking {
    /// Trains on `x` (one row per sample, samples in time order), classes `y` (1 = up) and the
    /// samples' label spans. Returns the ensemble and its out-of-fold predictions.
    ///
    /// # Errors
    /// Fewer than `4 · folds` samples, a single class, or a model that fails.
    pub fn fit(
        x: &[Vec<f64>],
        y: &[i32],
        spans: &[Span],
        p: StackingParams,
    ) -> Result<(Stacking, OutOfFold), ModelError> {
        let n = x.len();
        if n < 4 * p.folds.max(2) || y.len() != n || spans.len() != n {
            return Err(ModelError::Data(format!(
                "{n} samples for {} folds",
                p.folds
            )));
        }
        if y.iter().all(|c| *c == y[0]) {
            return Err(ModelError::Data("a single class".into()));
        }
        let mut oof: Vec<Option<[f64; 4]>> = vec![None; n];
        for split in purged_kfold(spans, p.folds, p.embargo) {
            let ty: Vec<i32> = split.train.iter().map(|&i| y[i]).collect();
            if ty.len() < 2 * p.k || ty.iter().all(|c| *c == ty[0]) {
                continue;
            }
            let bases = Bases::fit(&gather(x, &split.train)?, &ty, &p)?;
            let test = gather(x, &split.test)?;
            for (row, pr) in split.test.iter().zip(bases.proba(&test)?) {
                oof[*row] = Some(pr);
            }
        }
        let rows: Vec<usize> = (0..n).filter(|&i| oof[i].is_some()).collect();
        let meta_x: Vec<Vec<f64>> = rows
            .iter()
            .filter_map(|&i| oof[i].map(|r| r.to_vec()))
            .collect();
        let meta_y: Vec<i32> = rows.iter().map(|&i| y[i]).collect();
        if meta_y.iter().all(|c| *c == meta_y[0]) {
            return Err(ModelError::Data(
                "out-of-fold labels hold a single class".into(),
            ));
        }
        let mm = matrix(&meta_x)?;
        let meta = LogisticRegression::fit(&mm, &meta_y, LogisticRegressionParameters::default())
            .map_err(fail("meta"))?;
        // The ensemble's own out-of-sample figure: the meta-learner cross-validated over the
        // out-of-fold rows with the same purged folds.
        let meta_spans: Vec<Span> = rows.iter().map(|&i| spans[i]).collect();
        let mut ensemble = vec![f64::NAN; rows.len()];
        for split in purged_kfold(&meta_spans, p.folds, p.embargo) {
            let ty: Vec<i32> = split.train.iter().map(|&i| meta_y[i]).collect();
            if ty.iter().all(|c| *c == ty[0]) {
                continue;
            }
            let tx = gather(&meta_x, &split.train)?;
            let m = LogisticRegression::fit(&tx, &ty, LogisticRegressionParameters::default())
                .map_err(fail("meta"))?;
            let test = gather(&meta_x, &split.test)?;
            for (k, pr) in split.test.iter().zip(logistic_proba(&m, &test)) {
                ensemble[*k] = pr;
            }
        }
        let base = (0..4)
            .map(|m| rows.iter().filter_map(|&i| oof[i].map(|r| r[m])).collect())
            .collect();
        let all = matrix(x)?;
        let bases = Bases::fit(&all, y, &p)?;
        Ok((
            Stacking {
                bases,
                meta,
                params: p,
            },
            OutOfFold {
                rows,
                base,
                ensemble,
            },
        ))
    }

    /// `P(Up)` for each row.
    ///
    /// # Errors
    /// A model that fails on the input (e.g. a row of the wrong width).
    pub fn predict_proba(&self, x: &[Vec<f64>]) -> Result<Vec<f64>, ModelError> {
        let m = matrix(x)?;
        let base = self.bases.proba(&m)?;
        let meta_x = matrix(&base.iter().map(|r| r.to_vec()).collect::<Vec<_>>())?;
        Ok(logistic_proba(&self.meta, &meta_x))
    }

    /// The forest's impurity importance of each feature (for the selection ranking).
    ///
    /// # Errors
    /// smartcore's failure.
    pub fn forest_importances(&self) -> Result<Vec<f64>, ModelError> {
        self.bases
            .rf
            .compute_feature_importances()
            .map_err(fail("random_forest"))
    }
}

/// Out-of-sample quality of `P(Up)` predictions against classes (1 = up).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Share of correct calls at 0.5.
    pub accuracy: f64,
    /// Area under the ROC curve (rank statistic, ties halved).
    pub roc_auc: f64,
    /// Mean negative log-likelihood, probabilities clipped to [1e-15, 1 − 1e-15].
    pub log_loss: f64,
    /// Mean squared error of the probability.
    pub brier: f64,
    /// Share of correct calls among confident ones (|p − 0.5| > 0.05); NaN without any.
    pub hit_rate: f64,
}

/// Scores predictions `p` against classes `y`.
pub fn score(p: &[f64], y: &[i32]) -> Scores {
    let n = p.len().min(y.len()).max(1) as f64;
    let rows = p.iter().zip(y).filter(|(p, _)| p.is_finite());
    let (mut correct, mut ll, mut brier, mut conf, mut conf_ok) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (p, y) in rows.clone() {
        let up = *y == 1;
        if (*p > 0.5) == up {
            correct += 1.0;
        }
        let q = p.clamp(1e-15, 1.0 - 1e-15);
        ll -= if up { q.ln() } else { (1.0 - q).ln() };
        brier += (p - f64::from(*y)).powi(2);
        if (p - 0.5).abs() > 0.05 {
            conf += 1.0;
            if (*p > 0.5) == up {
                conf_ok += 1.0;
            }
        }
    }
    // AUC as the Mann–Whitney statistic.
    let mut ranked: Vec<(f64, i32)> = rows.map(|(p, y)| (*p, *y)).collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut pos, mut i) = (0.0, 0.0, 0);
    while i < ranked.len() {
        let mut j = i;
        while j + 1 < ranked.len() && ranked[j + 1].0 == ranked[i].0 {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for x in &ranked[i..=j] {
            if x.1 == 1 {
                rank_sum += r;
                pos += 1.0;
            }
        }
        i = j + 1;
    }
    let neg = ranked.len() as f64 - pos;
    let roc_auc = if pos > 0.0 && neg > 0.0 {
        (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
    } else {
        f64::NAN
    };
    Scores {
        accuracy: correct / n,
        roc_auc,
        log_loss: ll / n,
        brier: brier / n,
        hit_rate: if conf > 0.0 { conf_ok / conf } else { f64::NAN },
    }
}

/// The naive baseline: always the training majority class, with its frequency as probability.
pub fn baseline(train_y: &[i32], n: usize) -> Vec<f64> {
    let up = train_y.iter().filter(|c| **c == 1).count() as f64 / train_y.len().max(1) as f64;
    vec![up; n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    use rand_distr::StandardNormal;

    fn data(n: usize, seed: u64) -> (Vec<Vec<f64>>, Vec<i32>, Vec<Span>) {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a: f64 = rng.sample(StandardNormal);
            let b: f64 = rng.sample(StandardNormal);
            let noise: f64 = rng.sample(StandardNormal);
            y.push(i32::from(a + 0.5 * b * b - 0.5 + 0.7 * noise > 0.0));
            x.push(vec![a, b, rng.sample(StandardNormal)]);
        }
        let spans = (0..n as i64)
            .map(|i| Span {
                start: i,
                end: i + 3,
            })
            .collect();
        (x, y, spans)
    }

    #[test]
    fn the_ensemble_beats_the_baseline_out_of_sample_and_repeats_exactly() {
        let (x, y, spans) = data(600, 1);
        let p = StackingParams {
            trees: 20,
            ..StackingParams::default()
        };
        let (model, oof) = Stacking::fit(&x, &y, &spans, p).expect("fit");
        let truth: Vec<i32> = oof.rows.iter().map(|&i| y[i]).collect();
        let ens = score(&oof.ensemble, &truth);
        let base = score(&baseline(&y, truth.len()), &truth);
        assert!(ens.roc_auc > 0.7, "{ens:?}");
        assert!(ens.log_loss < base.log_loss, "{ens:?} vs {base:?}");
        assert!(ens.brier < base.brier);
        for (m, probs) in BASE_MODELS.iter().zip(&oof.base) {
            let s = score(probs, &truth);
            assert!(s.roc_auc > 0.6, "{m}: {s:?}");
        }
        // Seeded: the same data trains the same model.
        let (again, _) = Stacking::fit(&x, &y, &spans, p).expect("fit");
        let (fresh, _, _) = data(50, 9);
        assert_eq!(
            model.predict_proba(&fresh).expect("predict"),
            again.predict_proba(&fresh).expect("predict")
        );
        assert_eq!(model.forest_importances().expect("importances").len(), 3);
    }

    #[test]
    fn a_saved_model_loads_back_to_identical_predictions() {
        let (x, y, spans) = data(300, 2);
        let p = StackingParams {
            trees: 10,
            ..StackingParams::default()
        };
        let (model, _) = Stacking::fit(&x, &y, &spans, p).expect("fit");
        let bytes = bincode::serialize(&model).expect("serialize");
        let loaded: Stacking = bincode::deserialize(&bytes).expect("deserialize");
        let (fresh, _, _) = data(40, 3);
        assert_eq!(
            model.predict_proba(&fresh).expect("predict"),
            loaded.predict_proba(&fresh).expect("predict")
        );
    }

    #[test]
    fn logistic_probability_agrees_with_smartcores_classes() {
        let (x, y, _) = data(300, 4);
        let m = matrix(&x).expect("matrix");
        let lr =
            LogisticRegression::fit(&m, &y, LogisticRegressionParameters::default()).expect("fit");
        let classes = lr.predict(&m).expect("predict");
        for (p, c) in logistic_proba(&lr, &m).iter().zip(classes) {
            assert_eq!(i32::from(*p > 0.5), c, "p = {p}");
        }
    }

    #[test]
    fn scores_of_known_predictions() {
        let s = score(&[0.9, 0.8, 0.3, 0.1], &[1, 1, 0, 0]);
        assert_eq!(s.accuracy, 1.0);
        assert_eq!(s.roc_auc, 1.0);
        assert!((s.brier - (0.01 + 0.04 + 0.09 + 0.01) / 4.0).abs() < 1e-12);
        assert_eq!(s.hit_rate, 1.0);
        let half = score(&[0.5, 0.5], &[1, 0]);
        assert_eq!(half.roc_auc, 0.5);
    }
}
