//! As-of join: each bar gets the latest fundamental and sentiment values public at its time.
//!
//! Facts travel as events at their publication time; the operator holds both inputs by time and,
//! once both frontiers have passed `t`, applies the facts of `t` before it extends the bars of `t`.
//! A value therefore reaches a bar only if it was public at that bar's time — by construction, not
//! by a comparison someone could get wrong.

use std::collections::BTreeMap;

use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

use crate::bar::owner;
use crate::fact::Fact;

use super::features::FeatureBatch;
use super::keyed::KeyedState;

/// The per-ticker state: the latest value of each fact column (NaN until first published).
pub struct AsOf {
    width: usize,
    latest: KeyedState<Vec<f64>>,
}

impl AsOf {
    /// `width` fact columns.
    pub fn new(width: usize) -> Self {
        AsOf {
            width,
            latest: KeyedState::new(move || vec![f64::NAN; width]),
        }
    }

    /// Records a published value.
    pub fn apply(&mut self, f: &Fact) {
        if let Some(slot) = self.latest.get(f.ticker).get_mut(f.column as usize) {
            *slot = f.value;
        }
    }

    /// Appends the latest values to each bar's feature row.
    pub fn extend(&mut self, fb: FeatureBatch) -> FeatureBatch {
        let (w, k) = (fb.width(), self.width);
        let mut values = Vec::with_capacity(fb.bars.len() * (w + k));
        for i in 0..fb.bars.len() {
            values.extend_from_slice(fb.row(i));
            values.extend_from_slice(self.latest.get(fb.bars.ticker()[i]));
        }
        let mut out = FeatureBatch::new(fb.bars, w + k, values);
        out.drifts = fb.drifts;
        out
    }
}

/// Extension trait adding the as-of join to a stream of feature batches.
pub trait AsOfExt<'s> {
    /// Joins `facts` (events at their publication time) as `width` extra columns.
    fn join_as_of(
        self,
        facts: Stream<'s, u64, Vec<Fact>>,
        width: usize,
        peers: usize,
    ) -> Stream<'s, u64, Vec<FeatureBatch>>;
}

impl<'s> AsOfExt<'s> for Stream<'s, u64, Vec<FeatureBatch>> {
    fn join_as_of(
        self,
        facts: Stream<'s, u64, Vec<Fact>>,
        width: usize,
        peers: usize,
    ) -> Stream<'s, u64, Vec<FeatureBatch>> {
        let mut state = AsOf::new(width);
        self.binary_frontier::<_, timely::container::CapacityContainerBuilder<Vec<FeatureBatch>>, _, _, _, _>(
            facts,
            Exchange::new(|b: &FeatureBatch| u64::from(b.bars.dest)),
            Exchange::new(move |f: &Fact| owner(f.ticker, peers) as u64),
            "AsOf",
            move |_cap, _info| {
                let mut bars: BTreeMap<u64, (Capability<u64>, Vec<FeatureBatch>)> = BTreeMap::new();
                let mut pending: BTreeMap<u64, Vec<Fact>> = BTreeMap::new();
                move |(input1, frontier1), (input2, frontier2), output| {
                    let port = output.output_index();
                    input1.for_each_stamp(|cap, data| {
                        if let Some(&t) = cap.least() {
                            let e = bars.entry(t).or_insert_with(|| (cap.delayed(&t, port), Vec::new()));
                            data.for_each(|c| e.1.append(c));
                        }
                    });
                    input2.for_each_stamp(|cap, data| {
                        if let Some(&t) = cap.least() {
                            let e = pending.entry(t).or_default();
                            data.for_each(|c| e.append(c));
                        }
                    });
                    let done = |t: &u64| !frontier1.less_equal(t) && !frontier2.less_equal(t);
                    loop {
                        let next_fact = pending.first_key_value().map(|(t, _)| *t).filter(|t| done(t));
                        let next_bar = bars.first_key_value().map(|(t, _)| *t).filter(|t| done(t));
                        match (next_fact, next_bar) {
                            (Some(f), b) if b.is_none_or(|b| f <= b) => {
                                if let Some(facts) = pending.remove(&f) {
                                    facts.iter().for_each(|x| state.apply(x));
                                }
                            }
                            (_, Some(b)) => {
                                if let Some((cap, batches)) = bars.remove(&b) {
                                    let mut session = output.session(&cap);
                                    for fb in batches {
                                        session.give(state.extend(fb));
                                    }
                                }
                            }
                            _ => break,
                        }
                    }
                }
            },
        )
    }
}
