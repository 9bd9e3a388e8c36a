//! A parameter sweep's tail of the graph: every combination's rule model over the one feature
//! stream (features computed once for the union of the combinations' feature sets), and one
//! portfolio per combination, keyed beside the ticker: a combination's portfolio lives on worker
//! `combination % peers` and sees every ticker's bar of a time once the frontier has passed it, like
//! the single portfolio of a backtest — so each combination's ledger is the one its own backtest
//! would give, on any number of workers.

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;

use crate::bar::{Bar, TickerId};
use crate::frame::Bars;
use crate::operators::features::FeatureBatch;
use crate::operators::keyed::{KeyedState, by_time, in_order};
use crate::operators::portfolio::{EquityPoint, Portfolio};
use crate::operators::risk::PayoffEstimator;
use crate::operators::signal::{RuleModel, Signal};

/// One combination's model and the window of its Kelly payoff estimate.
#[derive(Debug, Clone)]
pub struct ComboModel {
    /// The combination's rule model, resolved against the union's feature columns.
    pub model: RuleModel,
    /// Its sizing's payoff window (`None`: its sizing does not read the payoff).
    pub payoff_window: Option<usize>,
}

/// The bars of one worker's batch of a time with the signals of the combinations one worker
/// owns.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SweepBatch {
    /// The worker that owns these combinations.
    pub dest: u32,
    /// The bars.
    pub bars: Bars,
    /// Per owned combination (in `dest`'s order), the signal of each bar.
    pub signals: Vec<Vec<Option<Signal>>>,
    /// Per owned combination, Kelly's b of each bar.
    pub payoff: Vec<Vec<f64>>,
}

/// The combinations worker `index` of `peers` owns.
pub fn owned(combos: usize, index: usize, peers: usize) -> Vec<usize> {
    (0..combos).filter(|c| c % peers == index).collect()
}

/// The portfolios one worker steps: (combination, its portfolio).
pub type SweepPortfolios<B> = Rc<RefCell<Vec<(usize, Portfolio<B>)>>>;

/// Extension trait adding the sweep's signal and portfolio stages.
pub trait SweepExt<'s> {
    /// Runs every combination's model per ticker and steps each combination's portfolio (those
    /// in `portfolios`, on this worker) once per time. Returns the equity points.
    fn sweep<B: crate::order::Broker + 'static>(
        self,
        combos: Vec<ComboModel>,
        peers: usize,
        portfolios: SweepPortfolios<B>,
    ) -> Stream<'s, u64, Vec<EquityPoint>>;
}

impl<'s> SweepExt<'s> for Stream<'s, u64, Vec<FeatureBatch>> {
    fn sweep<B: crate::order::Broker + 'static>(
        self,
        combos: Vec<ComboModel>,
        peers: usize,
        portfolios: SweepPortfolios<B>,
    ) -> Stream<'s, u64, Vec<EquityPoint>> {
        let per_worker: Vec<Vec<usize>> =
            (0..peers).map(|w| owned(combos.len(), w, peers)).collect();
        let models = combos.clone();
        let mut state = KeyedState::new(move || {
            models
                .iter()
                .map(|c| (c.model.clone(), c.payoff_window.map(PayoffEstimator::new)))
                .collect::<Vec<_>>()
        });
        let signals = in_order(self, "SweepSignals", move |_t, fbs, out| {
            for fb in fbs {
                let n = fb.bars.len();
                let mut sig = vec![vec![None; n]; combos.len()];
                let mut pay = vec![vec![f64::NAN; n]; combos.len()];
                for i in 0..n {
                    let models = state.get(fb.bars.ticker()[i]);
                    for (c, (model, payoff)) in models.iter_mut().enumerate() {
                        sig[c][i] = model.update(fb.row(i));
                        if let Some(payoff) = payoff {
                            pay[c][i] = payoff.update(fb.bars.close()[i]).unwrap_or(f64::NAN);
                        }
                    }
                }
                for (w, mine) in per_worker.iter().enumerate() {
                    if mine.is_empty() {
                        continue;
                    }
                    out.push(SweepBatch {
                        dest: w as u32,
                        bars: fb.bars.clone(),
                        signals: mine.iter().map(|&c| std::mem::take(&mut sig[c])).collect(),
                        payoff: mine.iter().map(|&c| std::mem::take(&mut pay[c])).collect(),
                    });
                }
            }
        });
        let mut rows: Vec<(Bar, usize, usize)> = Vec::new();
        let mut step_rows: Vec<(Bar, Option<Signal>, f64)> = Vec::new();
        by_time(
            signals,
            Exchange::new(|b: &SweepBatch| u64::from(b.dest)),
            "SweepPortfolios",
            move |t, batches: Vec<SweepBatch>, emit: &mut Vec<EquityPoint>| {
                rows.clear();
                for (k, b) in batches.iter().enumerate() {
                    rows.extend((0..b.bars.len()).map(|i| (b.bars.get(i), k, i)));
                }
                // Batches arrive from every worker in any order: tickers put them in one.
                rows.sort_by_key(|r: &(Bar, usize, usize)| -> TickerId { r.0.ticker });
                for (slot, (_, p)) in portfolios.borrow_mut().iter_mut().enumerate() {
                    step_rows.clear();
                    step_rows.extend(rows.iter().map(|(bar, k, i)| {
                        let b = &batches[*k];
                        (*bar, b.signals[slot][*i], b.payoff[slot][*i])
                    }));
                    p.step(crate::time::event_time(t), &step_rows);
                    // Positions' changes feed no exposure here: drop them as they come.
                    p.take_deltas();
                    if let Some(e) = p.last_equity() {
                        emit.push(*e);
                    }
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_are_dealt_round_robin() {
        assert_eq!(owned(5, 0, 2), vec![0, 2, 4]);
        assert_eq!(owned(5, 1, 2), vec![1, 3]);
        assert_eq!(owned(1, 1, 2), Vec::<usize>::new());
    }
}
