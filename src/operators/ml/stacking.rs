//! The stacking ensemble: four base models (random forest, logistic regression, decision tree,
//! Gaussian naive Bayes, all trained by smartcore) and a logistic-regression meta-learner trained
//! on the base models' out-of-fold probabilities, the folds purged and embargoed
//! ([`super::walk_forward`]).
//!
//! Every model gives the probability of the `Up` class. The forest is a regression forest on the
//! 0/1 label (its mean vote is the probability, and it has smartcore's impurity importances, which
//! the classifier lacks); the tree's probability is its leaf's class; logistic regression and naive
//! Bayes give theirs from their fitted parameters. Training is seeded, so it repeats exactly.
//!
//! **Compiled for the hot path.** Once smartcore has trained a model, its parameters are copied
//! into flat arrays: each tree becomes a complete binary tree of its depth (a leaf above the
//! bottom is repeated down, its splits at `+∞`), so a prediction is `depth` branch-free steps per
//! tree with no allocation, and one row costs well under a microsecond. The compiled ensemble is
//! what serializes (serde) and loads back to identical predictions; tests check it reproduces
//! smartcore's own predictions bit for bit.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::naive_bayes::gaussian::{GaussianNB, GaussianNBParameters};
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
    "naive_bayes",
];

/// Deepest tree the compiled form takes (a complete tree of depth 12 has 4,095 splits).
pub const MAX_DEPTH: u16 = 12;

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
    #[error("cannot train: {reason}")]
    Data {
        /// Too few samples, or a single class.
        reason: String,
    },
    /// A fitted smartcore model did not have the shape the compiled form expects.
    #[error("cannot compile {model}: {message}")]
    Compile {
        /// Which model.
        model: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl crate::fault::Blame for ModelError {
    fn fault(&self) -> crate::fault::Fault {
        match self {
            ModelError::Data { .. } => crate::fault::Fault::Data,
            ModelError::Fit { .. } | ModelError::Compile { .. } => crate::fault::Fault::Bug,
        }
    }
}

fn fail(model: &'static str) -> impl Fn(smartcore::error::Failed) -> ModelError {
    move |e| ModelError::Fit {
        model,
        message: e.to_string(),
    }
}

fn compile_error(model: &'static str, message: impl Into<String>) -> ModelError {
    ModelError::Compile {
        model,
        message: message.into(),
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
    /// Depth of the forest's and the tree's trees (at most [`MAX_DEPTH`]).
    pub max_depth: u16,
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
            folds: 5,
            embargo: 5,
            seed: 42,
        }
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// One node of a smartcore tree, read from its serde form (the fields are private; their serde
/// names are the stable way to read a fitted tree).
#[derive(Debug, Deserialize)]
struct RawNode {
    output: Value,
    split_feature: usize,
    split_value: Option<f64>,
    true_child: Option<usize>,
    false_child: Option<usize>,
}

/// Every `nodes` array in a serialized smartcore model, in order: one per tree.
fn node_lists(
    v: &Value,
    out: &mut Vec<Vec<RawNode>>,
    model: &'static str,
) -> Result<(), ModelError> {
    match v {
        Value::Object(map) => {
            if let Some(nodes @ Value::Array(_)) = map.get("nodes") {
                let list: Vec<RawNode> = serde_json::from_value(nodes.clone())
                    .map_err(|e| compile_error(model, e.to_string()))?;
                out.push(list);
                return Ok(());
            }
            for child in map.values() {
                node_lists(child, out, model)?;
            }
        }
        Value::Array(items) => {
            for child in items {
                node_lists(child, out, model)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Trees in complete binary layout while compiling: tree `t`'s splits are
/// `feature`/`threshold[t·(2^d − 1) ..]`, node `i`'s children `2i + 1` (`x ≤ threshold`,
/// smartcore's true branch) and `2i + 2`; its leaves `leaf[t·2^d ..]`. A padding split has
/// threshold `+∞` (always true).
#[derive(Debug)]
struct Dense {
    depth: u32,
    trees: usize,
    features: usize,
    feature: Vec<u32>,
    threshold: Vec<f64>,
    leaf: Vec<f64>,
}

/// A compiled forest (or a single tree). Each feature's split thresholds are kept sorted and
/// unique; a prediction first turns each input into its rank among them (`x ≤ t_k` exactly when
/// fewer than `k + 1` thresholds are below `x`), then walks the trees in complete binary layout on
/// 4-byte nodes (`feature << 16 | threshold rank`) to 4-byte leaf indices into the table of
/// distinct leaf values. That keeps a 30-tree, depth-6 forest near 16 KB, so a few hundred
/// tickers' models stay in cache. The mean leaf is summed in tree order, as smartcore does, so
/// predictions are identical to smartcore's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forest {
    depth: u32,
    trees: usize,
    features: usize,
    /// `cut_start[f] .. cut_start[f + 1]` are feature `f`'s thresholds in `cuts`.
    cut_start: Vec<u32>,
    cuts: Vec<f64>,
    nodes: Vec<u32>,
    leaves: Vec<u32>,
    values: Vec<f64>,
}

impl Forest {
    /// Compiles smartcore trees; `value` gives a leaf's prediction from its `output`.
    fn compile(
        trees: &[Vec<RawNode>],
        features: usize,
        model: &'static str,
        value: impl Fn(&Value) -> Option<f64>,
    ) -> Result<Forest, ModelError> {
        fn depth(nodes: &[RawNode], i: usize, level: u32) -> Result<u32, String> {
            let n = nodes.get(i).ok_or(format!("node {i} missing"))?;
            if level > u32::from(MAX_DEPTH) {
                return Err(format!("deeper than {MAX_DEPTH}"));
            }
            match (n.true_child, n.false_child) {
                (None, None) => Ok(level),
                (Some(t), Some(f)) => {
                    Ok(depth(nodes, t, level + 1)?.max(depth(nodes, f, level + 1)?))
                }
                _ => Err(format!("node {i} has one child")),
            }
        }
        if trees.is_empty() {
            return Err(compile_error(model, "no trees"));
        }
        let mut d = 0;
        for t in trees {
            d = d.max(depth(t, 0, 0).map_err(|e| compile_error(model, e))?);
        }
        let inner = (1usize << d) - 1;
        let mut f = Dense {
            depth: d,
            trees: trees.len(),
            features,
            feature: vec![0; inner * trees.len()],
            threshold: vec![f64::INFINITY; inner * trees.len()],
            leaf: vec![0.0; (inner + 1) * trees.len()],
        };
        struct Ctx<'a, F> {
            nodes: &'a [RawNode],
            base: usize,
            leaf_base: usize,
            inner: usize,
            depth: u32,
            value: &'a F,
        }
        fn place<F: Fn(&Value) -> Option<f64>>(
            f: &mut Dense,
            c: &Ctx<'_, F>,
            node: usize,
            pos: usize,
            level: u32,
        ) -> Result<(), String> {
            let n = &c.nodes[node];
            if level == c.depth {
                let v = (c.value)(&n.output).ok_or(format!("leaf {node}: output {}", n.output))?;
                f.leaf[c.leaf_base + pos - c.inner] = v;
                return Ok(());
            }
            match (n.true_child, n.false_child) {
                (Some(t), Some(fc)) => {
                    if n.split_feature >= f.features {
                        return Err(format!("node {node} splits feature {}", n.split_feature));
                    }
                    let v = n
                        .split_value
                        .ok_or(format!("node {node} has no split value"))?;
                    f.feature[c.base + pos] = n.split_feature as u32;
                    f.threshold[c.base + pos] = v;
                    place(f, c, t, 2 * pos + 1, level + 1)?;
                    place(f, c, fc, 2 * pos + 2, level + 1)
                }
                _ => {
                    // A leaf above the bottom: every descendant slot repeats it.
                    place(f, c, node, 2 * pos + 1, level + 1)?;
                    place(f, c, node, 2 * pos + 2, level + 1)
                }
            }
        }
        for (t, nodes) in trees.iter().enumerate() {
            let c = Ctx {
                nodes,
                base: t * inner,
                leaf_base: t * (inner + 1),
                inner,
                depth: d,
                value: &value,
            };
            place(&mut f, &c, 0, 0, 0).map_err(|e| compile_error(model, e))?;
        }
        Forest::pack(f).map_err(|e| compile_error(model, e))
    }

    /// Packs the dense layout: sorted distinct thresholds per feature, 4-byte nodes, leaf indices.
    fn pack(d: Dense) -> Result<Forest, String> {
        let virtual_feature = d.features;
        if virtual_feature > 0xFFFF {
            return Err(format!("{} features; at most 65,535", d.features));
        }
        let mut per: Vec<Vec<f64>> = vec![Vec::new(); d.features];
        for (f, t) in d.feature.iter().zip(&d.threshold) {
            if t.is_finite() {
                per[*f as usize].push(*t);
            }
        }
        for c in &mut per {
            c.sort_by(f64::total_cmp);
            c.dedup_by(|a, b| a.to_bits() == b.to_bits());
            if c.len() > 0xFFFF {
                return Err(format!("{} distinct thresholds on one feature", c.len()));
            }
        }
        let mut cut_start = Vec::with_capacity(d.features + 1);
        let mut cuts = Vec::new();
        for c in &per {
            cut_start.push(cuts.len() as u32);
            cuts.extend_from_slice(c);
        }
        cut_start.push(cuts.len() as u32);
        let nodes = d
            .feature
            .iter()
            .zip(&d.threshold)
            .map(|(f, t)| {
                if t.is_finite() {
                    let k = per[*f as usize].partition_point(|c| c.total_cmp(t).is_lt());
                    (*f << 16) | k as u32
                } else {
                    // Padding: the virtual feature's rank is always 0, so `0 ≤ 0` holds.
                    (virtual_feature as u32) << 16
                }
            })
            .collect();
        let mut values: Vec<f64> = d.leaf.clone();
        values.sort_by(f64::total_cmp);
        values.dedup_by(|a, b| a.to_bits() == b.to_bits());
        let leaves = d
            .leaf
            .iter()
            .map(|v| values.partition_point(|c| c.total_cmp(v).is_lt()) as u32)
            .collect();
        Ok(Forest {
            depth: d.depth,
            trees: d.trees,
            features: d.features,
            cut_start,
            cuts,
            nodes,
            leaves,
            values,
        })
    }

    /// Mean leaf over the trees for one row (`x` holds at least the trained features; a missing
    /// or NaN one fails every `≤` and takes the false branch, as in smartcore).
    ///
    /// Eight trees walk in lockstep, each step a comparison turned into an index (no branch on
    /// the data), so the processor overlaps their loads instead of guessing at splits.
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        let mut stack = [0u32; 33];
        let mut heap = Vec::new();
        let ranks: &mut [u32] = if self.features < stack.len() {
            &mut stack[..=self.features]
        } else {
            heap.resize(self.features + 1, 0);
            &mut heap
        };
        for (f, r) in ranks.iter_mut().take(self.features).enumerate() {
            let cuts = &self.cuts[self.cut_start[f] as usize..self.cut_start[f + 1] as usize];
            *r = match x.get(f) {
                Some(v) if !v.is_nan() => rank(cuts, *v),
                _ => u32::MAX,
            };
        }
        let mut sum = 0.0;
        let mut t = 0;
        while t + 8 <= self.trees {
            sum = self.walk::<8>(t, ranks, sum);
            t += 8;
        }
        while t + 4 <= self.trees {
            sum = self.walk::<4>(t, ranks, sum);
            t += 4;
        }
        while t < self.trees {
            sum = self.walk::<1>(t, ranks, sum);
            t += 1;
        }
        sum / self.trees as f64
    }
}

/// How many of the sorted, distinct `cuts` are below `v`.
///
/// By counting, not by binary search: a search is a chain of dependent loads and guesses, while
/// counts are independent comparisons the processor vectorizes and overlaps. Past a few dozen
/// thresholds it counts in two levels: the blocks of 16 whose last threshold is below `v` (all of
/// them are), then within the one block that straddles `v`.
#[inline]
fn rank(cuts: &[f64], v: f64) -> u32 {
    const B: usize = 16;
    let count = |s: &[f64]| s.iter().map(|c| u32::from(*c < v)).sum::<u32>();
    if cuts.len() <= 4 * B {
        return count(cuts);
    }
    let below = cuts
        .chunks_exact(B)
        .map(|block| u32::from(block[B - 1] < v))
        .sum::<u32>() as usize;
    let start = below * B;
    let end = (start + B).min(cuts.len());
    (start as u32) + count(&cuts[start..end])
}

impl Forest {
    /// Walks trees `t .. t + L` in lockstep and adds their leaves to `sum` in tree order.
    #[inline(always)]
    fn walk<const L: usize>(&self, t: usize, ranks: &[u32], mut sum: f64) -> f64 {
        let inner = (1usize << self.depth) - 1;
        let mut i = [0usize; L];
        for _ in 0..self.depth {
            for (k, at) in i.iter_mut().enumerate() {
                let node = self.nodes[(t + k) * inner + *at];
                // The false branch: more than `k` thresholds below `x`.
                *at = 2 * *at + 1 + usize::from(ranks[(node >> 16) as usize] > (node & 0xFFFF));
            }
        }
        for (k, leaf) in i.iter().enumerate() {
            sum += self.values[self.leaves[(t + k) * (inner + 1) + leaf - inner] as usize];
        }
        sum
    }
}

/// A logistic model `σ(w·x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    w: Vec<f64>,
    b: f64,
}

impl Linear {
    fn compile(lr: &LogisticRegression<f64, i32, M, Vec<i32>>) -> Linear {
        let (c, b) = (lr.coefficients(), lr.intercept());
        Linear {
            w: (0..c.shape().1).map(|j| *c.get((0, j))).collect(),
            b: *b.get((0, 0)),
        }
    }

    /// `P(Up)` of one row.
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        sigmoid(self.w.iter().zip(x).map(|(w, x)| w * x).sum::<f64>() + self.b)
    }
}

/// Gaussian naive Bayes over two classes: per class a log prior and per feature a mean and
/// variance (floored at 1e-9 of the largest variance, so a constant feature cannot divide by 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bayes {
    mean: [Vec<f64>; 2],
    half_precision: [Vec<f64>; 2],
    constant: [f64; 2],
}

impl Bayes {
    fn compile(nb: &GaussianNB<f64, u32, M, Vec<u32>>) -> Result<Bayes, ModelError> {
        let classes = nb.classes();
        let at = |c: u32| {
            classes
                .iter()
                .position(|k| *k == c)
                .ok_or_else(|| compile_error("naive_bayes", format!("no class {c}")))
        };
        let (down, up) = (at(0)?, at(1)?);
        let max_var = nb.var().iter().flatten().fold(0.0f64, |m, v| m.max(*v));
        let floor = if max_var > 0.0 { 1e-9 * max_var } else { 1.0 };
        let class = |k: usize| {
            let var: Vec<f64> = nb.var()[k].iter().map(|v| v.max(floor)).collect();
            let log_det: f64 = var
                .iter()
                .map(|v| 0.5 * (2.0 * std::f64::consts::PI * v).ln())
                .sum();
            (
                nb.theta()[k].clone(),
                var.iter().map(|v| 0.5 / v).collect::<Vec<f64>>(),
                nb.class_priors()[k].ln() - log_det,
            )
        };
        let (m0, h0, c0) = class(down);
        let (m1, h1, c1) = class(up);
        Ok(Bayes {
            mean: [m0, m1],
            half_precision: [h0, h1],
            constant: [c0, c1],
        })
    }

    /// `P(Up)` of one row.
    #[inline]
    pub fn predict(&self, x: &[f64]) -> f64 {
        let log = |c: usize| {
            self.constant[c]
                - x.iter()
                    .zip(&self.mean[c])
                    .zip(&self.half_precision[c])
                    .map(|((x, m), h)| (x - m) * (x - m) * h)
                    .sum::<f64>()
        };
        sigmoid(log(1) - log(0))
    }
}

/// The four fitted base models, compiled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Bases {
    forest: Forest,
    logistic: Linear,
    tree: Forest,
    bayes: Bayes,
}

/// smartcore's forest, fitted (for importances and the compile tests).
fn fit_forest(
    x: &M,
    y: &[i32],
    p: &StackingParams,
) -> Result<RandomForestRegressor<f64, f64, M, Vec<f64>>, ModelError> {
    let yf: Vec<f64> = y.iter().map(|c| f64::from(*c)).collect();
    RandomForestRegressor::fit(
        x,
        &yf,
        RandomForestRegressorParameters::default()
            .with_n_trees(p.trees)
            .with_max_depth(p.max_depth.min(MAX_DEPTH))
            .with_seed(p.seed),
    )
    .map_err(fail("random_forest"))
}

fn fit_tree(
    x: &M,
    y: &[i32],
    p: &StackingParams,
) -> Result<DecisionTreeClassifier<f64, i32, M, Vec<i32>>, ModelError> {
    DecisionTreeClassifier::fit(
        x,
        &y.to_vec(),
        DecisionTreeClassifierParameters {
            max_depth: Some(p.max_depth.min(MAX_DEPTH)),
            min_samples_leaf: 5,
            seed: Some(p.seed),
            ..DecisionTreeClassifierParameters::default()
        },
    )
    .map_err(fail("decision_tree"))
}

fn compile_forest(
    rf: &RandomForestRegressor<f64, f64, M, Vec<f64>>,
    features: usize,
) -> Result<Forest, ModelError> {
    let v = serde_json::to_value(rf).map_err(|e| compile_error("random_forest", e.to_string()))?;
    let mut trees = Vec::new();
    node_lists(&v, &mut trees, "random_forest")?;
    Forest::compile(&trees, features, "random_forest", Value::as_f64)
}

fn compile_tree(
    dt: &DecisionTreeClassifier<f64, i32, M, Vec<i32>>,
    features: usize,
) -> Result<Forest, ModelError> {
    let v = serde_json::to_value(dt).map_err(|e| compile_error("decision_tree", e.to_string()))?;
    let mut trees = Vec::new();
    node_lists(&v, &mut trees, "decision_tree")?;
    let classes: Vec<i64> = v
        .get("classes")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .ok_or_else(|| compile_error("decision_tree", "no classes"))?;
    Forest::compile(&trees, features, "decision_tree", |o| {
        let k = usize::try_from(o.as_u64()?).ok()?;
        let class = *classes.as_slice().get(k)?;
        Some(if class == 1 { 1.0 } else { 0.0 })
    })
}

impl Bases {
    /// Fits the four models and compiles them; also returns the forest's importances.
    fn fit(x: &M, y: &[i32], p: &StackingParams) -> Result<(Bases, Vec<f64>), ModelError> {
        let features = x.shape().1;
        let rf = fit_forest(x, y, p)?;
        let importances = rf
            .compute_feature_importances()
            .map_err(fail("random_forest"))?;
        let lr = LogisticRegression::fit(x, &y.to_vec(), LogisticRegressionParameters::default())
            .map_err(fail("logistic_regression"))?;
        let dt = fit_tree(x, y, p)?;
        let yu: Vec<u32> = y.iter().map(|c| u32::from(*c == 1)).collect();
        let nb = GaussianNB::fit(x, &yu, GaussianNBParameters::default())
            .map_err(fail("naive_bayes"))?;
        Ok((
            Bases {
                forest: compile_forest(&rf, features)?,
                logistic: Linear::compile(&lr),
                tree: compile_tree(&dt, features)?,
                bayes: Bayes::compile(&nb)?,
            },
            importances,
        ))
    }

    /// `P(Up)` of each base model for one row.
    #[inline]
    fn proba(&self, x: &[f64]) -> [f64; 4] {
        [
            self.forest.predict(x).clamp(0.0, 1.0),
            self.logistic.predict(x),
            self.tree.predict(x),
            self.bayes.predict(x),
        ]
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

/// A fitted stacking ensemble, compiled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stacking {
    bases: Bases,
    meta: Linear,
    importances: Vec<f64>,
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
            return Err(ModelError::Data {
                reason: format!("{n} samples for {} folds", p.folds),
            });
        }
        if y.iter().all(|c| *c == y[0]) {
            return Err(ModelError::Data {
                reason: "a single class".into(),
            });
        }
        let mut oof: Vec<Option<[f64; 4]>> = vec![None; n];
        for split in purged_kfold(spans, p.folds, p.embargo) {
            let ty: Vec<i32> = split.train.iter().map(|&i| y[i]).collect();
            if ty.len() < 10 || ty.iter().all(|c| *c == ty[0]) {
                continue;
            }
            let (bases, _) = Bases::fit(&gather(x, &split.train)?, &ty, &p)?;
            for &row in &split.test {
                oof[row] = Some(bases.proba(&x[row]));
            }
        }
        let rows: Vec<usize> = (0..n).filter(|&i| oof[i].is_some()).collect();
        let meta_x: Vec<Vec<f64>> = rows
            .iter()
            .filter_map(|&i| oof[i].map(|r| r.to_vec()))
            .collect();
        let meta_y: Vec<i32> = rows.iter().map(|&i| y[i]).collect();
        if meta_y.is_empty() || meta_y.iter().all(|c| *c == meta_y[0]) {
            return Err(ModelError::Data {
                reason: "out-of-fold labels hold a single class".into(),
            });
        }
        let fit_meta = |mx: &M, my: &[i32]| {
            LogisticRegression::fit(mx, &my.to_vec(), LogisticRegressionParameters::default())
                .map(|m| Linear::compile(&m))
                .map_err(fail("meta"))
        };
        let meta = fit_meta(&matrix(&meta_x)?, &meta_y)?;
        // The ensemble's own out-of-sample figure: the meta-learner cross-validated over the
        // out-of-fold rows with the same purged folds.
        let meta_spans: Vec<Span> = rows.iter().map(|&i| spans[i]).collect();
        let mut ensemble = vec![f64::NAN; rows.len()];
        for split in purged_kfold(&meta_spans, p.folds, p.embargo) {
            let ty: Vec<i32> = split.train.iter().map(|&i| meta_y[i]).collect();
            if ty.is_empty() || ty.iter().all(|c| *c == ty[0]) {
                continue;
            }
            let m = fit_meta(&gather(&meta_x, &split.train)?, &ty)?;
            for &k in &split.test {
                ensemble[k] = m.predict(&meta_x[k]);
            }
        }
        let base = (0..4)
            .map(|m| rows.iter().filter_map(|&i| oof[i].map(|r| r[m])).collect())
            .collect();
        let (bases, importances) = Bases::fit(&matrix(x)?, y, &p)?;
        Ok((
            Stacking {
                bases,
                meta,
                importances,
                params: p,
            },
            OutOfFold {
                rows,
                base,
                ensemble,
            },
        ))
    }

    /// `P(Up)` of one row: no allocation, no smartcore call.
    #[inline]
    pub fn predict_row(&self, x: &[f64]) -> f64 {
        self.meta.predict(&self.bases.proba(x))
    }

    /// `P(Up)` for each row.
    pub fn predict_proba(&self, x: &[Vec<f64>]) -> Vec<f64> {
        x.iter().map(|r| self.predict_row(r)).collect()
    }

    /// The forest's impurity importance of each feature (for the selection ranking).
    pub fn forest_importances(&self) -> &[f64] {
        &self.importances
    }
}

/// The forest's impurity importances of each column of `x` for classes `y` (the random-forest
/// ranking of feature selection).
///
/// # Errors
/// smartcore's failure.
pub fn forest_importances(
    x: &[Vec<f64>],
    y: &[i32],
    p: &StackingParams,
) -> Result<Vec<f64>, ModelError> {
    fit_forest(&matrix(x)?, y, p)?
        .compute_feature_importances()
        .map_err(fail("random_forest"))
}

/// Undefined scores (NaN) as `null` in JSON, which has no NaN; binary formats keep the float.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            x.is_finite().then_some(*x).serialize(s)
        } else {
            x.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        if d.is_human_readable() {
            Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
        } else {
            f64::deserialize(d)
        }
    }
}

/// Out-of-sample quality of `P(Up)` predictions against classes (1 = up).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Share of correct calls at 0.5.
    #[serde(with = "nan_as_null")]
    pub accuracy: f64,
    /// Area under the ROC curve (rank statistic, ties halved).
    #[serde(with = "nan_as_null")]
    pub roc_auc: f64,
    /// Mean negative log-likelihood, probabilities clipped to [1e-15, 1 − 1e-15].
    #[serde(with = "nan_as_null")]
    pub log_loss: f64,
    /// Mean squared error of the probability.
    #[serde(with = "nan_as_null")]
    pub brier: f64,
    /// Share of correct calls among confident ones (|p − 0.5| > 0.05); NaN without any.
    #[serde(with = "nan_as_null")]
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
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    use rand_distr::StandardNormal;

    proptest! {
        /// The two-level count equals a binary search's rank, at every size and for values
        /// equal to a threshold, between two, or outside them all.
        #[test]
        fn rank_counts_the_thresholds_below(
            raw in proptest::collection::btree_set(-1000i32..1000, 0..400),
            probe in -1001i32..1001,
            half in any::<bool>(),
        ) {
            let cuts: Vec<f64> = raw.iter().map(|c| f64::from(*c)).collect();
            let v = f64::from(probe) + if half { 0.5 } else { 0.0 };
            prop_assert_eq!(rank(&cuts, v), cuts.partition_point(|c| *c < v) as u32);
        }
    }

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
        assert_eq!(model.predict_proba(&fresh), again.predict_proba(&fresh));
        assert_eq!(model.forest_importances().len(), 3);
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
        assert_eq!(model, loaded);
        assert_eq!(model.predict_proba(&fresh), loaded.predict_proba(&fresh));
    }

    #[test]
    fn compiled_models_reproduce_smartcore_bit_for_bit() {
        let (x, y, _) = data(400, 4);
        let (fresh, _, _) = data(300, 5);
        let m = matrix(&x).expect("matrix");
        let fm = matrix(&fresh).expect("matrix");
        for depth in [1, 3, 6, 9] {
            let p = StackingParams {
                trees: 12,
                max_depth: depth,
                ..StackingParams::default()
            };
            let rf = fit_forest(&m, &y, &p).expect("forest");
            let forest = compile_forest(&rf, 3).expect("compile");
            let want = rf.predict(&fm).expect("predict");
            for (row, w) in fresh.iter().zip(&want) {
                assert_eq!(forest.predict(row).to_bits(), w.to_bits(), "depth {depth}");
            }
            let dt = fit_tree(&m, &y, &p).expect("tree");
            let tree = compile_tree(&dt, 3).expect("compile");
            let want = dt.predict_proba(&fm).expect("predict");
            for (i, row) in fresh.iter().enumerate() {
                assert_eq!(tree.predict(row), *want.get((i, 1)), "depth {depth}");
            }
        }
        let lr =
            LogisticRegression::fit(&m, &y, LogisticRegressionParameters::default()).expect("fit");
        let classes = lr.predict(&fm).expect("predict");
        let linear = Linear::compile(&lr);
        for (row, c) in fresh.iter().zip(classes) {
            assert_eq!(i32::from(linear.predict(row) > 0.5), c);
        }
        let yu: Vec<u32> = y.iter().map(|c| u32::from(*c == 1)).collect();
        let nb = GaussianNB::fit(&m, &yu, GaussianNBParameters::default()).expect("fit");
        let classes = nb.predict(&fm).expect("predict");
        let bayes = Bayes::compile(&nb).expect("compile");
        for (row, c) in fresh.iter().zip(classes) {
            assert_eq!(u32::from(bayes.predict(row) > 0.5), c);
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
