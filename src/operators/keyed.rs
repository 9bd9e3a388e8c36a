//! The adapter every per-ticker and portfolio operator shares.
//!
//! Timely may deliver a later time's data before an earlier one is complete. A stateful per-ticker
//! kernel must see a ticker's bars in time order, and the portfolio must see every ticker's data for
//! `t` before deciding, so [`by_time`] stashes input by time and hands a time's data to the logic
//! only once the input frontier has passed it, in increasing time order.
//!
//! Behind the quality gate's exchange, each worker's per-ticker stages are chained by `Pipeline`
//! edges that carry the times in increasing order already: [`in_order`] hands them on as they
//! arrive, without a capability held per time.

use std::collections::BTreeMap;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::Operator;

use crate::bar::TickerId;

/// Runs `logic(t, items, out)` once per time `t`, in time order, after the frontier passed `t`.
/// Whatever `logic` pushes into `out` is emitted at `t`.
pub fn by_time<'s, I, O, P, L>(
    stream: Stream<'s, u64, Vec<I>>,
    pact: P,
    name: &str,
    mut logic: L,
) -> Stream<'s, u64, Vec<O>>
where
    I: 'static,
    O: 'static,
    P: ParallelizationContract<u64, Vec<I>>,
    L: FnMut(u64, Vec<I>, &mut Vec<O>) + 'static,
{
    stream.unary_frontier::<CapacityContainerBuilder<Vec<O>>, _, _, _>(pact, name, |_cap, _info| {
        let mut stash = Stash::default();
        let mut out = Vec::new();
        move |(input, frontier), output| {
            let port = output.output_index();
            input.for_each_stamp(|cap, data| stash.absorb(cap, data, port));
            for (t, cap, items) in stash.ready(frontier) {
                logic(t, items, &mut out);
                if !out.is_empty() {
                    output.session(&cap).give_iterator(out.drain(..));
                }
            }
        }
    })
}

/// Input held by time until the frontier passes it, each time with a capability to emit at it.
struct Stash<I>(BTreeMap<u64, (Capability<u64>, Vec<I>)>);

impl<I> Default for Stash<I> {
    fn default() -> Self {
        Stash(BTreeMap::new())
    }
}

impl<I> Stash<I> {
    /// Files one delivery under its time.
    fn absorb<'a>(
        &mut self,
        cap: timely::dataflow::operators::InputCapability<u64>,
        data: impl IntoIterator<Item = &'a mut Vec<I>>,
        port: usize,
    ) where
        I: 'a,
    {
        if let Some(&t) = cap.least() {
            let entry = self
                .0
                .entry(t)
                .or_insert_with(|| (cap.delayed(&t, port), Vec::new()));
            for container in data {
                entry.1.append(container);
            }
        }
    }

    /// Takes every time the frontier has passed, in time order.
    fn ready(
        &mut self,
        frontier: &timely::progress::frontier::MutableAntichain<u64>,
    ) -> Vec<(u64, Capability<u64>, Vec<I>)> {
        let mut out = Vec::new();
        while let Some(entry) = self.0.first_entry() {
            if frontier.less_equal(entry.key()) {
                break;
            }
            let (t, (cap, items)) = entry.remove_entry();
            out.push((t, cap, items));
        }
        out
    }
}

/// For a stage fed over a `Pipeline` edge by a stage of the same worker that emits its times in
/// increasing order (every per-ticker stage after the quality gate's exchange): its input arrives
/// in time order, so each activation's times are handed to `logic` at once, as `(t, items)` in
/// time order, and what `logic` puts in `outs[k]` is emitted at the `k`-th time; no time waits
/// for the frontier to pass it. Holding a capability per time until the frontier passes it is
/// progress-tracking work that every worker repeats for every operator at every time; a stage
/// that needs no other worker's data for `t` should not pay it. A per-ticker stage whose state is
/// large can take a ticker's bars of all those times in a row while its state is in cache
/// (tickers do not interact there). `at_end` runs once, when the input has ended.
pub fn in_order_then<'s, I, O, L, E>(
    stream: Stream<'s, u64, Vec<I>>,
    name: &str,
    mut logic: L,
    mut at_end: E,
) -> Stream<'s, u64, Vec<O>>
where
    I: 'static,
    O: 'static,
    L: FnMut(Vec<(u64, Vec<I>)>, &mut Vec<Vec<O>>) + 'static,
    E: FnMut() + 'static,
{
    let mut ended = false;
    stream.unary_frontier::<CapacityContainerBuilder<Vec<O>>, _, _, _>(
        Pipeline,
        name,
        |_cap, _info| {
            let mut outs: Vec<Vec<O>> = Vec::new();
            let mut last: Option<u64> = None;
            move |(input, frontier), output| {
                let port = output.output_index();
                let mut caps: Vec<Capability<u64>> = Vec::new();
                let mut ready: Vec<(u64, Vec<I>)> = Vec::new();
                // Stamps come sorted within an activation; across activations the upstream's
                // order holds.
                input.for_each_stamp(|cap, data| {
                    let Some(&t) = cap.least() else { return };
                    debug_assert!(last.is_none_or(|l| l <= t), "{t} after {last:?}");
                    last = Some(t);
                    match ready.last_mut() {
                        Some((at, items)) if *at == t => {
                            data.for_each(|c| items.append(c));
                        }
                        _ => {
                            if let Some(c) = cap.retain_least(port) {
                                caps.push(c);
                                let mut items = Vec::new();
                                data.for_each(|c| items.append(c));
                                ready.push((t, items));
                            }
                        }
                    }
                });
                if !ready.is_empty() {
                    outs.clear();
                    outs.resize_with(ready.len(), Vec::new);
                    logic(ready, &mut outs);
                    for (cap, out) in caps.iter().zip(outs.iter_mut()) {
                        if !out.is_empty() {
                            output.session(cap).give_iterator(out.drain(..));
                        }
                    }
                }
                if !ended && frontier.is_empty() {
                    ended = true;
                    at_end();
                }
            }
        },
    )
}

/// As [`in_order_then`], one time at a time, with nothing to do at the end: `logic(t, items,
/// out)` as [`by_time`]'s.
pub fn in_order<'s, I, O, L>(
    stream: Stream<'s, u64, Vec<I>>,
    name: &str,
    mut logic: L,
) -> Stream<'s, u64, Vec<O>>
where
    I: 'static,
    O: 'static,
    L: FnMut(u64, Vec<I>, &mut Vec<O>) + 'static,
{
    in_order_then(
        stream,
        name,
        move |times, outs| {
            for ((t, items), out) in times.into_iter().zip(outs.iter_mut()) {
                logic(t, items, out);
            }
        },
        || {},
    )
}

/// Splits a stream of results into its `Ok` and `Err` parts (errors are data: they travel on).
pub fn split<'s, A: 'static, B: 'static>(
    s: Stream<'s, u64, Vec<Result<A, B>>>,
) -> (Stream<'s, u64, Vec<A>>, Stream<'s, u64, Vec<B>>) {
    s.ok_err(|x| x)
}

/// Per-ticker state, indexed by the dense ticker id, created on first use.
pub struct KeyedState<S> {
    states: Vec<Option<S>>,
    init: Box<dyn Fn() -> S>,
}

impl<S> KeyedState<S> {
    /// State created by `init` for each ticker seen.
    pub fn new(init: impl Fn() -> S + 'static) -> Self {
        KeyedState {
            states: Vec::new(),
            init: Box::new(init),
        }
    }

    /// Takes every state out, with its ticker id.
    pub fn drain(&mut self) -> impl Iterator<Item = (TickerId, S)> + '_ {
        self.states
            .drain(..)
            .enumerate()
            .filter_map(|(i, s)| Some((i as TickerId, s?)))
    }

    /// The state of `ticker`, created if new.
    pub fn get(&mut self, ticker: TickerId) -> &mut S {
        let i = ticker as usize;
        if i >= self.states.len() {
            self.states.resize_with(i + 1, || None);
        }
        self.states[i].get_or_insert_with(|| (self.init)())
    }
}

/// A sink on worker 0 that hands every record to `logic` as it arrives (in no particular time
/// order) and returns an empty stream carrying its input's frontier: a probe on that stream passes
/// `t` only once every record at or before `t` has been handed over, so a driver can commit what
/// the sink gathered through `t` knowing nothing of `t` is still on its way.
pub fn gather<'s, I, L>(
    stream: Stream<'s, u64, Vec<I>>,
    name: &str,
    mut logic: L,
) -> Stream<'s, u64, Vec<()>>
where
    I: timely::ExchangeData,
    L: FnMut(&mut Vec<I>) + 'static,
{
    stream.unary::<CapacityContainerBuilder<Vec<()>>, _, _, _>(
        timely::dataflow::channels::pact::Exchange::new(|_: &I| 0),
        name,
        |_cap, _info| move |input, _output| input.for_each(|_, data| logic(data)),
    )
}
