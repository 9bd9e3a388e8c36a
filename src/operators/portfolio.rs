//! The portfolio operator: one account, decided once per timestamp after the frontier passed it.
//!
//! For each time `t`, with every ticker's bar and signal for `t` in hand (from every worker, in any
//! order: the result does not depend on how many workers produced them):
//! 1. orders pending from earlier bars execute at this bar's open (sized then, against the equity
//!    marked at the opens); only the tickers with working orders are looked at,
//! 2. positions are marked at the closes and the equity point for `t` is recorded,
//! 3. risk reviews the signals and approved orders go to the broker for the ticker's next bar.
//!
//! Everything is booked in a [`Ledger`] that the sinks write out.
//!
//! The rows of a time are read where the workers' batches hold them ([`Merged`]), not copied or
//! sorted: the benchmark comes summed by the workers, marks and fills look a ticker up (only at a
//! venue does the close mark every row, in any order), and only the signals are put in ticker
//! order. The per-ticker work before the portfolio (features, model, Kelly's payoff) runs on each
//! ticker's worker.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use timely::dataflow::Stream;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Concat;
use timely::dataflow::operators::vec::Map;

use crate::bar::{Bar, TickerId};
use crate::config::StopAction;
use crate::order::{
    Broker, Due, EntryType, Fill, Order, OrderKind, OrderSide, OrderType, TimeInForce, VenueEnd,
    VenueUpdate, VenueUpdateKind,
};
use crate::time::EventTime;

use super::benchmark::{Share, Tracker};
use super::exposure::{ExposureRow, SectorExposure};
use super::keyed::by_time;
use super::risk::{EntryContext, EntrySize, Refusal, RiskEngine};
use super::signal::{Signal, SignalBatch, Target};

/// Python's float floor division `a // b` (CPython's algorithm), so share counts match
/// backtesting.py's bit for bit.
pub fn py_floor_div(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div == 0.0 {
        return 0.0_f64.copysign(a / b);
    }
    let mut floordiv = div.floor();
    if div - floordiv > 0.5 {
        floordiv += 1.0;
    }
    floordiv
}

/// 1 − machine epsilon: backtesting.py's default size for `buy()`.
const ALL_IN: f64 = 1.0 - f64::EPSILON;

/// An open position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Signed shares.
    pub quantity: f64,
    /// Entry price.
    pub entry_price: f64,
    /// Entry time.
    pub entry_ts: EventTime,
    /// Commission paid on entry.
    pub entry_commission: f64,
    /// Entry value in cents (signed), the exact amount the position adds to exposure.
    pub cost_cents: i64,
}

/// A change of the set of open positions: an entry inserts `(ticker, cost)`, the exit retracts the
/// very same record, so the collection of these updates holds exactly the open positions.
/// Amounts are integer cents so sums are exact in any order (the exposure collection relies on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PositionDelta {
    /// Ticker.
    pub ticker: TickerId,
    /// Value at entry prices, in cents (signed: negative for a short).
    pub cost_cents: i64,
    /// +1 when the position opens, −1 when it closes.
    pub diff: isize,
}

/// A signal as written to the signals output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRecord {
    /// Bar time.
    pub ts: EventTime,
    /// Ticker.
    pub ticker: TickerId,
    /// The model's output.
    pub signal: Signal,
}

/// Final state of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Executed.
    Filled,
    /// Refused by risk when decided.
    Refused,
    /// Accepted, then cancelled: at the fill (sizing gave nothing, no position to close), as a
    /// bracket leg whose position closed, or the rest of an IOC.
    Cancelled,
    /// Its time in force ended it before it (completely) filled.
    Expired,
    /// Accepted, never executed: the run ended before the ticker's next bar.
    Unfilled,
}

impl OrderStatus {
    /// The lowercase name every table, metric label and report uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Filled => "filled",
            OrderStatus::Refused => "refused",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Expired => "expired",
            OrderStatus::Unfilled => "unfilled",
        }
    }
}

/// An order with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// The order.
    pub order: Order,
    /// Outcome.
    pub status: OrderStatus,
    /// Why refused, cancelled or expired; empty otherwise.
    pub reason: String,
    /// Shares filled (an order ended early may have filled in part).
    pub filled: f64,
}

/// An order as it left the portfolio for a venue, with the quantity planned at the decision: a
/// venue needs one up front (the paper broker sizes an entry at its first execution instead).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    /// The order (its id and the run make the client order id).
    pub order: Order,
    /// Shares to trade: an entry's size at the deciding close (or its limit or stop), an exit's
    /// or a bracket leg's the position's.
    pub quantity: f64,
    /// The order (a bracket leg at the venue) it replaces: sent as the venue's cancel-and-replace
    /// of that one, which ends when the venue has replaced it.
    #[serde(default)]
    pub replaces: Option<u64>,
}

/// A round trip, or a position still open at the end (marked at the last close).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    /// Ticker.
    pub ticker: TickerId,
    /// Signed shares.
    pub size: f64,
    /// Entry time.
    pub entry_ts: EventTime,
    /// Entry price.
    pub entry_price: f64,
    /// Exit time (last bar's time when open).
    pub exit_ts: EventTime,
    /// Exit price (last close when open).
    pub exit_price: f64,
    /// Commissions paid (entry and exit).
    pub commission: f64,
    /// `size·(exit − entry) − commission`.
    pub pnl: f64,
    /// `pnl / |size·entry|`, in percent.
    pub return_pct: f64,
    /// Still open at the end.
    pub open: bool,
}

/// Equity at a bar's close.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    /// Time.
    pub ts: EventTime,
    /// Cash.
    pub cash: f64,
    /// Marked value of positions.
    pub positions_value: f64,
    /// Cash plus positions.
    pub equity: f64,
    /// Number of open positions.
    pub open_positions: usize,
    /// Marked value of the positions without sign (long plus short): gross exposure.
    pub gross_value: f64,
    /// The benchmark's return from the previous time to this one
    /// ([`crate::operators::benchmark`]).
    pub benchmark_return: f64,
}

/// A position after a fill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionRecord {
    /// Fill time.
    pub ts: EventTime,
    /// Ticker.
    pub ticker: TickerId,
    /// Signed shares after the fill.
    pub quantity: f64,
    /// Entry price (0 when flat).
    pub entry_price: f64,
}

/// Everything the portfolio decided and booked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    /// Non-empty signals.
    pub signals: Vec<SignalRecord>,
    /// Every order with its outcome.
    pub orders: Vec<OrderRecord>,
    /// Orders bound for a venue, as they were submitted (only when the portfolio keeps an
    /// outbox: [`Portfolio::keep_outbox`]).
    pub submitted: Vec<Submitted>,
    /// Orders sent to a venue that the portfolio withdrew, by the time it did (venue mode):
    /// the venue is asked to cancel them, and they end when it says so.
    pub cancels: Vec<(EventTime, u64)>,
    /// Executions.
    pub fills: Vec<Fill>,
    /// Positions after each fill.
    pub positions: Vec<PositionRecord>,
    /// Equity per timestamp.
    pub equity: Vec<EquityPoint>,
    /// Closed round trips, then positions open at the end.
    pub trades: Vec<Trade>,
    /// Out-of-sample scores of every ML training, by time then ticker.
    pub ml_metrics: Vec<(TickerId, crate::operators::ml::online::TrainingRecord)>,
    /// ML drift events, by time then ticker.
    pub drifts: Vec<(TickerId, crate::operators::drift::DriftRecord)>,
    /// Starting capital.
    pub capital: f64,
    /// Bars seen (after the quality gate).
    pub bars: u64,
}

impl Ledger {
    /// Moves the rows later than `t` — each by its own time: a signal's, an order's decision, a
    /// fill's, a closed trade's exit, a model's installation — into a ledger of their own, so a
    /// live run commits through `t` exactly what is at or before `t`. Capital and the bar count
    /// are copied.
    pub fn split_after(&mut self, t: EventTime) -> Ledger {
        fn later<R>(rows: &mut Vec<R>, t: EventTime, time: impl Fn(&R) -> EventTime) -> Vec<R> {
            let (keep, later): (Vec<R>, Vec<R>) =
                std::mem::take(rows).into_iter().partition(|r| time(r) <= t);
            *rows = keep;
            later
        }
        Ledger {
            signals: later(&mut self.signals, t, |r| r.ts),
            orders: later(&mut self.orders, t, |r| r.order.ts),
            submitted: later(&mut self.submitted, t, |r| r.order.ts),
            cancels: later(&mut self.cancels, t, |r| r.0),
            fills: later(&mut self.fills, t, |r| r.ts),
            positions: later(&mut self.positions, t, |r| r.ts),
            equity: later(&mut self.equity, t, |r| r.ts),
            trades: later(&mut self.trades, t, |r| r.exit_ts),
            ml_metrics: later(&mut self.ml_metrics, t, |r| r.1.installed_at),
            drifts: later(&mut self.drifts, t, |r| r.1.ts),
            capital: self.capital,
            bars: self.bars,
        }
    }

    /// Appends a later ledger's rows (as [`Portfolio::drain`] hands them out, in order).
    pub fn append(&mut self, mut later: Ledger) {
        self.signals.append(&mut later.signals);
        self.orders.append(&mut later.orders);
        self.submitted.append(&mut later.submitted);
        self.cancels.append(&mut later.cancels);
        self.fills.append(&mut later.fills);
        self.positions.append(&mut later.positions);
        self.equity.append(&mut later.equity);
        self.trades.append(&mut later.trades);
        self.ml_metrics.append(&mut later.ml_metrics);
        self.drifts.append(&mut later.drifts);
        self.capital = later.capital;
        self.bars = self.bars.max(later.bars);
    }
}

/// Cash, positions and the latest price of each ticker.
#[derive(Debug, Clone)]
pub struct Account {
    cash: f64,
    positions: BTreeMap<TickerId, Position>,
    marks: Vec<f64>,
}

impl Account {
    fn new(capital: f64) -> Self {
        Account {
            cash: capital,
            positions: BTreeMap::new(),
            marks: Vec::new(),
        }
    }

    fn mark(&mut self, t: TickerId, price: f64) {
        let i = t as usize;
        if i >= self.marks.len() {
            self.marks.resize(i + 1, f64::NAN);
        }
        self.marks[i] = price;
    }

    fn gross_value(&self) -> f64 {
        self.positions
            .iter()
            .map(|(&t, p)| {
                (p.quantity * self.marks.get(t as usize).copied().unwrap_or(p.entry_price)).abs()
            })
            .sum()
    }

    fn positions_value(&self) -> f64 {
        self.positions
            .iter()
            .map(|(&t, p)| {
                p.quantity * self.marks.get(t as usize).copied().unwrap_or(p.entry_price)
            })
            .sum()
    }

    fn equity(&self) -> f64 {
        self.cash + self.positions_value()
    }
}

/// How the portfolio words its orders: the entry's type and time in force, and the bracket that
/// protects every position once its entry fills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderPolicy {
    /// The entry's type; its prices are `offset` from the deciding bar's close.
    pub entry: EntryType,
    /// Distance of an entry's limit or stop from the deciding close, as a fraction: a limit
    /// better by it, a stop worse by it; a stop-limit's limit is that much beyond its stop.
    pub offset: f64,
    /// Time in force of entries and exits.
    pub tif: TimeInForce,
    /// A take-profit limit this fraction beyond the entry price.
    pub take_profit: Option<f64>,
    /// A stop-loss this fraction against the entry price.
    pub stop_loss: Option<f64>,
}

impl Default for OrderPolicy {
    fn default() -> Self {
        OrderPolicy {
            entry: EntryType::Market,
            offset: 0.0,
            tif: TimeInForce::Day,
            take_profit: None,
            stop_loss: None,
        }
    }
}

impl OrderPolicy {
    fn entry_type(&self, side: OrderSide, close: f64) -> OrderType {
        let s = side.sign();
        let stop = close * (1.0 + s * self.offset);
        match self.entry {
            EntryType::Market => OrderType::Market,
            EntryType::Limit => OrderType::Limit {
                limit: close * (1.0 - s * self.offset),
            },
            EntryType::Stop => OrderType::Stop { stop },
            EntryType::StopLimit => OrderType::StopLimit {
                stop,
                limit: stop * (1.0 + s * self.offset),
            },
        }
    }

    /// The bracket's legs around a position entered at `price` in `direction`.
    fn legs(&self, direction: f64, price: f64) -> [(OrderKind, Option<OrderType>); 2] {
        [
            (
                OrderKind::TakeProfit,
                self.take_profit.map(|f| OrderType::Limit {
                    limit: price * (1.0 + direction * f),
                }),
            ),
            (
                OrderKind::StopLoss,
                self.stop_loss.map(|f| OrderType::Stop {
                    stop: price * (1.0 - direction * f),
                }),
            ),
        ]
    }
}

/// One time's bars, each with the model's signal and Kelly's payoff: what [`Portfolio::step_rows`]
/// reads. A row is named by an index `k < len()`; rows need not lie in ticker order, since
/// marking and the benchmark do not care, and the few that need an order (signals) are given in
/// it. The portfolio operator reads the workers' batches where they lie ([`Merged`]); tests and
/// kernels give a slice of rows in ticker order.
pub trait TimeRows {
    /// Number of rows.
    fn len(&self) -> usize;
    /// Whether there is no row.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Calls `f(ticker, close)` for every row, in no particular order.
    fn closes(&self, f: impl FnMut(TickerId, f64));
    /// The rows of `ticker`, in row order.
    fn rows_of(&self, ticker: TickerId) -> impl Iterator<Item = usize> + '_;
    /// The rows with a signal, in ticker order (a ticker's rows in row order).
    fn signalled(&self) -> impl Iterator<Item = usize> + '_;
    /// Row `k`'s bar.
    fn bar(&self, k: usize) -> Bar;
    /// Row `k`'s close (without reading the bar's other columns).
    fn close(&self, k: usize) -> f64;
    /// Row `k`'s signal.
    fn signal(&self, k: usize) -> Option<Signal>;
    /// Row `k`'s payoff estimate.
    fn payoff(&self, k: usize) -> f64;
    /// The benchmark's return at this time. Rows that carry their workers' parts of it (summed
    /// beside the signals, [`SignalBatch::benchmark`]) add those up; plain rows are observed in
    /// `own`, the portfolio's tracker.
    fn benchmark(&self, own: &mut Tracker) -> f64;
}

impl TimeRows for [(Bar, Option<Signal>, f64)] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }
    fn closes(&self, mut f: impl FnMut(TickerId, f64)) {
        for (b, _, _) in self {
            f(b.ticker, b.close);
        }
    }
    fn rows_of(&self, ticker: TickerId) -> impl Iterator<Item = usize> + '_ {
        let first = self.partition_point(|r| r.0.ticker < ticker);
        (first..self.len()).take_while(move |&k| self[k].0.ticker == ticker)
    }
    fn signalled(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&k| self[k].1.is_some())
    }
    fn bar(&self, k: usize) -> Bar {
        self[k].0
    }
    fn close(&self, k: usize) -> f64 {
        self[k].0.close
    }
    fn signal(&self, k: usize) -> Option<Signal> {
        self[k].1
    }
    fn payoff(&self, k: usize) -> f64 {
        self[k].2
    }
    fn benchmark(&self, own: &mut Tracker) -> f64 {
        own.step(self.iter().map(|(b, _, _)| (b.ticker, b.close)))
    }
}

/// What [`Merged`] keeps from one time to the next, so indexing a time allocates nothing.
#[derive(Debug, Default)]
pub struct MergeScratch {
    /// Per ticker: the time it was last indexed at and its row there.
    slot: Vec<(u32, u32)>,
    /// The current indexing's stamp.
    stamp: u32,
    /// Row index where each batch starts.
    starts: Vec<u32>,
    /// The rows with a signal: (ticker, row), sorted.
    signalled: Vec<(TickerId, u32)>,
    /// Every row in ticker order, (ticker, row): only when a ticker has two rows at one time.
    order: Vec<(TickerId, u32)>,
}

/// The signal batches of one time from every worker, read where they lie: a row `k` is batch `b`'s
/// row `k - start(b)`. Indexing is one pass over each batch's tickers and signals (no sort of the
/// whole time): a dense ticker → row slot for fills, and the rows with a signal sorted by ticker.
pub struct Merged<'a> {
    batches: &'a [SignalBatch],
    scratch: &'a MergeScratch,
    len: usize,
}

impl<'a> Merged<'a> {
    /// Indexes `batches` (one time's, in any order) into `scratch` and reads through it.
    pub fn new(batches: &'a [SignalBatch], scratch: &'a mut MergeScratch) -> Self {
        let s = scratch;
        s.stamp = s.stamp.wrapping_add(1);
        if s.stamp == 0 {
            // Stamps wrapped: forget every slot rather than mistake an old one for this time's.
            s.slot.iter_mut().for_each(|x| *x = (0, 0));
            s.stamp = 1;
        }
        let stamp = s.stamp;
        s.starts.clear();
        s.signalled.clear();
        s.order.clear();
        let mut len = 0u32;
        let mut repeated = false;
        for sb in batches {
            debug_assert!(
                sb.signalled.len() == sb.signal.iter().filter(|x| x.is_some()).count(),
                "a signal batch's signalled rows were not indexed"
            );
            s.starts.push(len);
            let tickers = sb.bars.ticker();
            for (i, &t) in tickers.iter().enumerate() {
                let at = t as usize;
                if at >= s.slot.len() {
                    s.slot.resize(at + 1, (0, 0));
                }
                repeated |= s.slot[at].0 == stamp;
                s.slot[at] = (stamp, len + i as u32);
            }
            s.signalled
                .extend(sb.signalled.iter().map(|&i| (tickers[i as usize], len + i)));
            len += tickers.len() as u32;
        }
        s.signalled.sort_unstable();
        if repeated {
            // Some ticker has two rows (the quality gate refuses that): its rows are found
            // through the whole time in ticker order instead of its slot.
            for (sb, &start) in batches.iter().zip(&s.starts) {
                s.order.extend(
                    sb.bars
                        .ticker()
                        .iter()
                        .enumerate()
                        .map(|(i, &t)| (t, start + i as u32)),
                );
            }
            s.order.sort_unstable();
        }
        Merged {
            batches,
            scratch: s,
            len: len as usize,
        }
    }

    fn at(&self, k: usize) -> (&'a SignalBatch, usize) {
        let starts = &self.scratch.starts;
        let b = starts.partition_point(|&s| s as usize <= k) - 1;
        (&self.batches[b], k - starts[b] as usize)
    }
}

impl TimeRows for Merged<'_> {
    fn len(&self) -> usize {
        self.len
    }
    fn closes(&self, mut f: impl FnMut(TickerId, f64)) {
        for sb in self.batches {
            for (&t, &c) in sb.bars.ticker().iter().zip(sb.bars.close()) {
                f(t, c);
            }
        }
    }
    fn rows_of(&self, ticker: TickerId) -> impl Iterator<Item = usize> + '_ {
        let s = self.scratch;
        let (one, many) = if !s.order.is_empty() {
            let first = s.order.partition_point(|o| o.0 < ticker);
            let n = s.order[first..].partition_point(|o| o.0 == ticker);
            (None, &s.order[first..first + n])
        } else {
            let hit = s
                .slot
                .get(ticker as usize)
                .filter(|x| x.0 == s.stamp)
                .map(|x| x.1 as usize);
            (hit, &s.order[..0])
        };
        one.into_iter().chain(many.iter().map(|o| o.1 as usize))
    }
    fn signalled(&self) -> impl Iterator<Item = usize> + '_ {
        self.scratch.signalled.iter().map(|o| o.1 as usize)
    }
    fn bar(&self, k: usize) -> Bar {
        let (sb, i) = self.at(k);
        sb.bars.get(i)
    }
    fn close(&self, k: usize) -> f64 {
        let (sb, i) = self.at(k);
        sb.bars.close()[i]
    }
    fn signal(&self, k: usize) -> Option<Signal> {
        let (sb, i) = self.at(k);
        sb.signal[i]
    }
    fn payoff(&self, k: usize) -> f64 {
        let (sb, i) = self.at(k);
        sb.payoff[i]
    }
    fn benchmark(&self, _own: &mut Tracker) -> f64 {
        Share::combine(self.batches.iter().map(|b| &b.benchmark))
    }
}

/// The portfolio state machine (risk + broker + account + ledger).
pub struct Portfolio<B: Broker> {
    risk: RiskEngine,
    broker: B,
    policy: OrderPolicy,
    account: Account,
    ledger: Ledger,
    /// Shares filled so far and fills booked, per order with a fill that still works.
    partial: BTreeMap<u64, (f64, u32)>,
    /// The working bracket legs of each ticker's position.
    brackets: BTreeMap<TickerId, Vec<Order>>,
    /// Entries not yet executed: ticker and the signed value they were reviewed for (they
    /// count against the exposure limits until they fill or end).
    pending: BTreeMap<u64, (TickerId, f64)>,
    /// Exits a stop sent (the daily loss stop's or the kill switch's flatten): no signal
    /// cancels them.
    forced: BTreeSet<u64>,
    /// Sector of each ticker (by id), for the sector exposure limit.
    sectors: Vec<String>,
    /// Whether the kill switch's cancellations were made.
    killed: bool,
    /// Whether submitted orders are recorded for a venue ([`Ledger::submitted`]).
    outbox: bool,
    /// Venue mode: fills and ends come from the venue ([`VenueUpdate`]), never from bars.
    venue: bool,
    /// Venue mode: every order sent and not yet ended by the venue, with its planned quantity.
    sent: BTreeMap<u64, (Order, f64)>,
    /// Venue mode: orders withdrawn (cancel asked of the venue) and the reason, until it ends
    /// them; a fill that raced the cancel is still booked.
    cancelling: BTreeMap<u64, String>,
    next_id: u64,
    last_ts: Option<EventTime>,
    deltas: Vec<PositionDelta>,
    benchmark: Tracker,
}

impl<B: Broker> Portfolio<B> {
    /// A flat account with the risk engine's capital; market entries, no brackets.
    pub fn new(risk: RiskEngine, broker: B) -> Self {
        Portfolio::with_policy(risk, broker, OrderPolicy::default())
    }

    /// A flat account whose orders follow `policy`.
    pub fn with_policy(risk: RiskEngine, broker: B, policy: OrderPolicy) -> Self {
        let capital = risk.spec().capital;
        Portfolio {
            risk,
            broker,
            policy,
            account: Account::new(capital),
            ledger: Ledger {
                capital,
                ..Ledger::default()
            },
            partial: BTreeMap::new(),
            brackets: BTreeMap::new(),
            pending: BTreeMap::new(),
            forced: BTreeSet::new(),
            sectors: Vec::new(),
            killed: false,
            outbox: false,
            venue: false,
            sent: BTreeMap::new(),
            cancelling: BTreeMap::new(),
            next_id: 0,
            last_ts: None,
            deltas: Vec::new(),
            benchmark: Tracker::default(),
        }
    }

    /// Records every order submitted, with its planned quantity, for a venue to be sent
    /// ([`Ledger::submitted`]); an entry that cannot be sized at its decision is refused then.
    pub fn keep_outbox(&mut self) {
        self.outbox = true;
    }

    /// Venue mode: the orders go to a venue through the outbox, and only the venue's
    /// [`VenueUpdate`]s fill or end them (the broker only keeps the book of working orders; bars
    /// execute nothing). A withdrawn order is asked of the venue to cancel ([`Ledger::cancels`])
    /// and ends when the venue says so; a fill that raced the cancel is booked.
    pub fn venue_mode(&mut self) {
        self.outbox = true;
        self.venue = true;
    }

    /// Books a position reconciliation adopted from the venue: an `adjust` order, filled at once
    /// at the venue's average price without commission, takes the position from what the ledger
    /// holds to `quantity` (a position that changes side is closed, then opened).
    fn adopt(&mut self, ts: EventTime, ticker: TickerId, quantity: f64, price: f64) {
        let held = self
            .account
            .positions
            .get(&ticker)
            .map_or(0.0, |p| p.quantity);
        if held != 0.0 && held * quantity < 0.0 {
            self.adopt(ts, ticker, 0.0, price);
            return self.adopt(ts, ticker, quantity, price);
        }
        let delta = quantity - held;
        if delta.abs() <= 1e-9 * quantity.abs().max(held.abs()).max(1.0) {
            return;
        }
        let side = if delta > 0.0 {
            OrderSide::Buy
        } else {
            OrderSide::Sell
        };
        tracing::warn!(
            ticker,
            held,
            quantity,
            price,
            "position adopted from the venue"
        );
        let order = self.new_order(ts, ticker, side, OrderKind::Adjust, OrderType::Market);
        self.book(&order, ts, price, delta.abs());
        self.end(order, OrderStatus::Filled, "adopted_from_venue");
    }

    /// Submits `order` to the broker, and records it for the venue when keeping an outbox.
    fn send(&mut self, order: Order, quantity: f64) {
        self.send_replacing(order, quantity, None);
    }

    /// [`Portfolio::send`], as the replacement of the order `replaces` at the venue.
    fn send_replacing(&mut self, order: Order, quantity: f64, replaces: Option<u64>) {
        if self.outbox {
            self.ledger.submitted.push(Submitted {
                order: order.clone(),
                quantity,
                replaces,
            });
        }
        if self.venue {
            self.sent.insert(order.id, (order.clone(), quantity));
        }
        self.broker.submit(order);
    }

    /// Withdraws a working order: cancelled at once on paper; at a venue, asked to cancel and
    /// ended when it says so. Whether it was working.
    fn withdraw(&mut self, id: u64, reason: &str) -> bool {
        let Some(order) = self.broker.cancel(id) else {
            return false;
        };
        if self.venue {
            self.pending.remove(&id);
            self.cancelling.insert(id, reason.to_string());
            self.ledger
                .cancels
                .push((self.last_ts.unwrap_or(order.ts), id));
        } else {
            self.end(order, OrderStatus::Cancelled, reason);
        }
        true
    }

    /// Books what the venue reported about an order (venue mode).
    fn apply(&mut self, u: &VenueUpdate) {
        if u.kind == VenueUpdateKind::Rerouted {
            return self.leave_venue();
        }
        if let VenueUpdateKind::Position {
            ticker,
            quantity,
            price,
        } = u.kind
        {
            return self.adopt(u.ts, ticker, quantity, price);
        }
        let Some((order, planned)) = self.sent.get(&u.order_id).cloned() else {
            tracing::warn!(
                order_id = u.order_id,
                "a venue update for an order this run did not send (or already ended): ignored"
            );
            return;
        };
        match &u.kind {
            VenueUpdateKind::Fill { quantity, price } => {
                self.pending.remove(&order.id);
                self.book(&order, u.ts, *price, *quantity);
                let filled = self.partial.get(&order.id).map_or(0.0, |p| p.0);
                // The book keeps working what is left (the venue ends it, IOC included).
                if self
                    .broker
                    .working(order.ticker)
                    .iter()
                    .any(|o| o.id == order.id)
                {
                    let _ = self.broker.executed(order.id, (planned - filled).max(0.0));
                }
            }
            VenueUpdateKind::Position { .. } | VenueUpdateKind::Rerouted => {}
            VenueUpdateKind::Ended { end, reason } => {
                self.sent.remove(&order.id);
                self.broker.cancel(order.id);
                let asked = self.cancelling.remove(&order.id);
                let (status, why) = match end {
                    VenueEnd::Filled => (OrderStatus::Filled, String::new()),
                    VenueEnd::Cancelled => (
                        OrderStatus::Cancelled,
                        asked.unwrap_or_else(|| format!("venue: {reason}")),
                    ),
                    VenueEnd::Expired => (OrderStatus::Expired, format!("venue: {reason}")),
                    VenueEnd::Rejected => (OrderStatus::Refused, format!("broker: {reason}")),
                };
                let why = why.trim_end_matches(": ").to_string();
                self.end(order, status, &why);
            }
        }
    }

    /// The broker process failed over to paper ([`VenueUpdateKind::Rerouted`]): from here on
    /// the paper broker fills every working order on the next bars (an entry not filled yet is
    /// sized at its first execution, a partly filled one keeps its remainder), nothing more is
    /// recorded for the venue, and the orders withdrawn while the venue was asked to cancel
    /// them end now. Once: the run stays on paper until it is started again.
    fn leave_venue(&mut self) {
        if !self.venue {
            return;
        }
        tracing::warn!(
            working = self.sent.len(),
            "the venue is down and the broker failed over to paper: the run trades on paper from here"
        );
        self.venue = false;
        self.outbox = false;
        for (id, reason) in std::mem::take(&mut self.cancelling) {
            if let Some((order, _)) = self.sent.remove(&id) {
                self.end(order, OrderStatus::Cancelled, &reason);
            }
        }
        self.sent.clear();
    }

    /// Gives each ticker's sector (indexed by ticker id; a ticker past the end is `unknown`),
    /// for `[risk] max_sector_exposure`.
    pub fn set_sectors(&mut self, sectors: Vec<String>) {
        self.sectors = sectors;
    }

    /// Takes the position changes made since the last call (the sector exposure's input).
    pub fn take_deltas(&mut self) -> Vec<PositionDelta> {
        std::mem::take(&mut self.deltas)
    }

    /// The latest equity point.
    pub fn last_equity(&self) -> Option<&EquityPoint> {
        self.ledger.equity.last()
    }

    /// Sets what the equity is measured against (`[outputs] benchmark`; equal weight unless set).
    pub fn set_benchmark(&mut self, which: super::benchmark::Benchmark) {
        self.benchmark = Tracker::new(which);
    }

    /// Processes every ticker's bar and signal for time `t`; `rows` must be sorted by ticker.
    pub fn step(&mut self, t: EventTime, rows: &[(Bar, Option<Signal>, f64)]) {
        self.step_rows(t, rows, &[]);
    }

    /// [`Portfolio::step`] with the venue's updates at `t` (venue mode).
    pub fn step_with(
        &mut self,
        t: EventTime,
        rows: &[(Bar, Option<Signal>, f64)],
        updates: &[VenueUpdate],
    ) {
        self.step_rows(t, rows, updates);
    }

    /// Processes time `t`: `rows` are its bars with their signals and payoffs (one row per ticker
    /// and time, as the quality gate leaves them; signals are decided in ticker order),
    /// `updates` the venue's updates at `t` (venue mode), booked before anything else of the
    /// step, in [`VenueUpdate::sort_key`] order.
    ///
    /// Only the tickers with working orders are looked at for fills, and only the tickers a
    /// position can be valued at are marked at the open; at the close those again (on paper) or
    /// every bar's ticker (at a venue, whose fills need no bar); every signal is decided on.
    pub fn step_rows<R: TimeRows + ?Sized>(
        &mut self,
        t: EventTime,
        rows: &R,
        updates: &[VenueUpdate],
    ) {
        let n = rows.len();
        self.last_ts = Some(t);
        self.ledger.bars += n as u64;
        if self.risk.killed() && !self.killed {
            // Seen before anything executes on this step's bars.
            self.killed = true;
            let flatten = self.risk.spec().on_kill == StopAction::Flatten;
            self.stop(t, Refusal::KillSwitch, true, flatten);
        }
        // Marks at the open are read only by positions (held now, or opened by this step's
        // fills and venue updates) before the close marks them again: only those are set.
        let valued = self.held_or_filling(updates);
        for &ticker in &valued {
            for k in rows.rows_of(ticker) {
                self.account.mark(ticker, rows.bar(k).open);
            }
        }
        // Bars execute from the step after a failover to paper on (its update came at `t`).
        let simulate = !self.venue;
        for u in updates {
            self.apply(u);
        }
        if simulate {
            // Executing a ticker's order only adds orders of that ticker (its bracket), so the
            // tickers working now are all the ones that can fill on this step's bars.
            for ticker in self.broker.busy_tickers() {
                for k in rows.rows_of(ticker) {
                    let bar = rows.bar(k);
                    for due in self.broker.due(&bar) {
                        match due {
                            Due::Execute {
                                order,
                                price,
                                cap,
                                remaining,
                            } => self.execute(order, &bar, price, cap, remaining),
                            Due::Expired { order, reason } => {
                                self.end(order, OrderStatus::Expired, reason);
                            }
                        }
                    }
                }
            }
        }
        if simulate {
            // On paper a position opens only by a fill on one of this step's bars, its ticker
            // marked at that bar's open first: no other ticker's mark is ever read, so only the
            // tickers marked at the open (every position after this step's fills among them)
            // are marked at the close, not every row, which worker 0 would read from the other
            // workers' memory.
            for &ticker in &valued {
                for k in rows.rows_of(ticker) {
                    self.account.mark(ticker, rows.close(k));
                }
            }
        } else {
            // A venue may report a fill of a ticker without a bar now: its position is valued at
            // the ticker's last close, held or not.
            rows.closes(|ticker, close| self.account.mark(ticker, close));
        }
        let positions_value = self.account.positions_value();
        let equity = self.account.cash + positions_value;
        if self.risk.mark(t, equity) {
            let flatten = self.risk.spec().on_daily_stop == StopAction::Flatten;
            self.stop(t, Refusal::DailyLossStop, false, flatten);
        }
        let benchmark_return = rows.benchmark(&mut self.benchmark);
        self.ledger.equity.push(EquityPoint {
            ts: t,
            cash: self.account.cash,
            positions_value,
            equity,
            open_positions: self.account.positions.len(),
            gross_value: self.account.gross_value(),
            benchmark_return,
        });
        for k in rows.signalled() {
            if let Some(s) = rows.signal(k) {
                let bar = rows.bar(k);
                self.ledger.signals.push(SignalRecord {
                    ts: t,
                    ticker: bar.ticker,
                    signal: s,
                });
                self.decide(&bar, &s, rows.payoff(k), equity);
            }
        }
    }

    /// The tickers whose positions this step can value before its close: held, with working
    /// orders, or named by a venue update (an adopted position, a fill of a sent order).
    fn held_or_filling(&self, updates: &[VenueUpdate]) -> Vec<TickerId> {
        let mut tickers: Vec<TickerId> = self.account.positions.keys().copied().collect();
        tickers.extend(self.broker.busy_tickers());
        for u in updates {
            match u.kind {
                VenueUpdateKind::Position { ticker, .. } => tickers.push(ticker),
                _ => tickers.extend(self.sent.get(&u.order_id).map(|(o, _)| o.ticker)),
            }
        }
        tickers.sort_unstable();
        tickers.dedup();
        tickers
    }

    fn new_order(
        &mut self,
        t: EventTime,
        ticker: TickerId,
        side: OrderSide,
        kind: OrderKind,
        order_type: OrderType,
    ) -> Order {
        self.next_id += 1;
        Order {
            id: self.next_id,
            ts: t,
            ticker,
            side,
            kind,
            order_type,
            tif: self.policy.tif,
            parent: None,
        }
    }

    /// A stop: cancels the working entries (and the model's exits too when `exits`), booked with
    /// the stop's reason, and when `flatten` sends a market exit for every position (bracket
    /// legs then cancelled as for any exit). Bracket legs otherwise keep protecting positions.
    fn stop(&mut self, t: EventTime, why: Refusal, exits: bool, flatten: bool) {
        tracing::warn!(reason = why.as_str(), flatten, ts = t, "risk stop");
        for o in self.broker.open_orders() {
            let cancel = match o.kind {
                OrderKind::Entry { .. } => true,
                OrderKind::Exit => (exits || flatten) && !self.forced.contains(&o.id),
                OrderKind::TakeProfit | OrderKind::StopLoss | OrderKind::Adjust => false,
            };
            if cancel {
                self.withdraw(o.id, why.as_str());
            }
        }
        if !flatten {
            return;
        }
        let held: Vec<(TickerId, f64)> = self
            .account
            .positions
            .iter()
            .map(|(&t, p)| (t, p.quantity))
            .collect();
        for (ticker, quantity) in held {
            if self
                .broker
                .working(ticker)
                .iter()
                .any(|o| self.forced.contains(&o.id))
            {
                continue;
            }
            let side = if quantity > 0.0 {
                OrderSide::Sell
            } else {
                OrderSide::Buy
            };
            let order = self.new_order(t, ticker, side, OrderKind::Exit, OrderType::Market);
            self.cancel_legs(ticker, "replaced_by_exit", None);
            self.forced.insert(order.id);
            self.send(order, quantity.abs());
        }
    }

    /// Gross exposure of the positions and pending entries other than `ticker`'s, and the net
    /// exposure of those in `ticker`'s sector (0 without a sector limit), at entry values.
    fn exposure_besides(&self, ticker: TickerId) -> (f64, f64) {
        let sector_limit = self.risk.spec().max_sector_exposure.is_some();
        let sector_of = |t: TickerId| {
            self.sectors
                .get(t as usize)
                .map_or(super::exposure::UNKNOWN, String::as_str)
        };
        let mine = sector_of(ticker);
        let (mut gross, mut net) = (0.0, 0.0);
        let positions = self
            .account
            .positions
            .iter()
            .map(|(&t, p)| (t, p.quantity * p.entry_price));
        let pending = self.pending.values().copied();
        for (t, value) in positions.chain(pending) {
            if t == ticker {
                continue;
            }
            gross += value.abs();
            if sector_limit && sector_of(t) == mine {
                net += value;
            }
        }
        (gross, net)
    }

    /// Books an order's final state, with what it filled.
    fn end(&mut self, order: Order, status: OrderStatus, reason: &str) {
        self.pending.remove(&order.id);
        self.forced.remove(&order.id);
        let filled = self.partial.remove(&order.id).map_or(0.0, |p| p.0);
        self.ledger.orders.push(OrderRecord {
            order,
            status,
            reason: reason.to_string(),
            filled,
        });
    }

    /// Cancels the working bracket legs of `ticker` but the one `filling`, each booked with
    /// `reason`.
    fn cancel_legs(&mut self, ticker: TickerId, reason: &str, filling: Option<u64>) {
        for leg in self.brackets.remove(&ticker).unwrap_or_default() {
            if Some(leg.id) == filling {
                continue;
            }
            self.withdraw(leg.id, reason);
        }
    }

    fn decide(&mut self, bar: &Bar, s: &Signal, payoff: f64, equity: f64) {
        let held = self
            .account
            .positions
            .get(&bar.ticker)
            .map_or(0, |p| if p.quantity > 0.0 { 1 } else { -1 });
        let want = s.target.direction();
        // Orders still working from earlier bars that the target no longer wants are cancelled;
        // the ones it still wants keep working instead of being sent again.
        let (mut exiting, mut entering) = (false, false);
        for o in self.broker.working(bar.ticker) {
            if self.forced.contains(&o.id) {
                exiting = true;
                continue;
            }
            let agrees = match o.kind {
                OrderKind::Entry { direction, .. } => direction == want,
                OrderKind::Exit => held != want,
                OrderKind::TakeProfit | OrderKind::StopLoss | OrderKind::Adjust => continue,
            };
            if !agrees {
                self.withdraw(o.id, "signal_changed");
            } else if o.kind == OrderKind::Exit {
                exiting = true;
            } else {
                entering = true;
            }
        }
        if held == want {
            return;
        }
        if held != 0 && !exiting {
            let side = if held > 0 {
                OrderSide::Sell
            } else {
                OrderSide::Buy
            };
            let order =
                self.new_order(bar.ts, bar.ticker, side, OrderKind::Exit, OrderType::Market);
            if let Err(r) = self.risk.review_exit() {
                self.end(order, OrderStatus::Refused, r.as_str());
                return;
            }
            self.cancel_legs(bar.ticker, "replaced_by_exit", None);
            let quantity = self
                .account
                .positions
                .get(&bar.ticker)
                .map_or(0.0, |p| p.quantity.abs());
            self.send(order, quantity);
        }
        if s.target == Target::Flat || entering {
            return;
        }
        let side = if want > 0 {
            OrderSide::Buy
        } else {
            OrderSide::Sell
        };
        let (gross, sector_net) = self.exposure_besides(bar.ticker);
        let cx = EntryContext {
            equity,
            cash: self.account.cash,
            positions: self.account.positions.len() + self.broker.pending_entries()
                - usize::from(held != 0),
            confidence: s.confidence,
            payoff,
            direction: f64::from(want),
            gross,
            sector_net,
        };
        let order_type = self.policy.entry_type(side, bar.close);
        let reviewed = self.risk.review_entry(&cx).and_then(|size| {
            // A venue takes a quantity with the order: sized now, at the price it may fill at.
            let planned = if self.outbox {
                let at = order_type
                    .limit()
                    .or(order_type.stop())
                    .unwrap_or(bar.close);
                self.size_entry(size, want, at)?
            } else {
                f64::NAN
            };
            Ok((size, planned))
        });
        match reviewed {
            Ok((size, planned)) => {
                let kind = OrderKind::Entry {
                    direction: want,
                    size,
                };
                let order = self.new_order(bar.ts, bar.ticker, side, kind, order_type);
                let value = match size {
                    EntrySize::AllIn => equity,
                    EntrySize::Fraction(f) => f * equity,
                };
                self.pending
                    .insert(order.id, (bar.ticker, f64::from(want) * value));
                self.send(order, planned);
            }
            Err(r) => {
                let kind = OrderKind::Entry {
                    direction: want,
                    size: EntrySize::Fraction(0.0),
                };
                let order = self.new_order(bar.ts, bar.ticker, side, kind, order_type);
                self.end(order, OrderStatus::Refused, r.as_str());
            }
        }
    }

    /// Shares an entry takes when it first executes at `price`: its size against the equity
    /// now, a long's limited by the cash. `Err` when nothing or too little can be bought.
    fn size_entry(&self, size: EntrySize, direction: i8, price: f64) -> Result<f64, Refusal> {
        let unit = price + self.broker.commission(1.0, price);
        let equity = self.account.equity();
        let budget = match size {
            EntrySize::AllIn => equity * ALL_IN,
            EntrySize::Fraction(f) => equity * f,
        }
        .min(equity * self.risk.spec().max_position);
        let mut q = self.shares(budget, unit);
        if direction > 0 {
            q = q.min(self.affordable(price));
        }
        if q <= 0.0 {
            return Err(Refusal::InsufficientCash);
        }
        if q * price < self.risk.spec().min_order {
            return Err(Refusal::BelowMinOrder);
        }
        Ok(q)
    }

    fn shares(&self, budget: f64, unit: f64) -> f64 {
        if self.broker.whole_shares() {
            py_floor_div(budget, unit)
        } else {
            budget / unit
        }
    }

    /// Shares the cash buys at `price`, commission included.
    fn affordable(&self, price: f64) -> f64 {
        let unit = price + self.broker.commission(1.0, price);
        self.shares(self.account.cash * ALL_IN, unit)
    }

    /// Executes what the broker offers of `order` on `bar`: sizes it at its first execution,
    /// fills at most `cap`, and books the fill.
    fn execute(
        &mut self,
        order: Order,
        bar: &Bar,
        price: f64,
        cap: Option<f64>,
        remaining: Option<f64>,
    ) {
        let held = self
            .account
            .positions
            .get(&order.ticker)
            .map_or(0.0, |p| p.quantity);
        let wanted = match order.kind {
            OrderKind::Entry { direction, size } => {
                if held * f64::from(direction) < 0.0 {
                    // The exit before it has not closed the position yet: wait for it.
                    if order.tif == TimeInForce::Ioc {
                        self.broker.cancel(order.id);
                        self.end(order, OrderStatus::Cancelled, "position_not_closed");
                    }
                    return;
                }
                if remaining.is_none() {
                    // Sized now: from here on the position counts, not the review's estimate.
                    self.pending.remove(&order.id);
                }
                match remaining {
                    None => match self.size_entry(size, direction, price) {
                        Ok(q) => q,
                        Err(r) => {
                            self.broker.cancel(order.id);
                            return self.end(order, OrderStatus::Cancelled, r.as_str());
                        }
                    },
                    Some(r) if direction > 0 => r.min(self.affordable(price)),
                    Some(r) => r,
                }
            }
            _ => {
                if held * order.side.sign() >= 0.0 {
                    self.broker.cancel(order.id);
                    return self.end(order, OrderStatus::Cancelled, "no_position");
                }
                remaining.unwrap_or(f64::INFINITY).min(held.abs())
            }
        };
        if wanted <= 0.0 {
            self.broker.cancel(order.id);
            return self.end(
                order,
                OrderStatus::Cancelled,
                Refusal::InsufficientCash.as_str(),
            );
        }
        let quantity = wanted.min(cap.unwrap_or(f64::INFINITY));
        if quantity > 0.0 {
            self.book(&order, bar.ts, price, quantity);
        }
        let left = wanted - quantity.max(0.0);
        match self.broker.executed(order.id, left) {
            Some(rest) => {
                let reason = if quantity > 0.0 {
                    "ioc_remainder"
                } else {
                    "ioc_unfilled"
                };
                self.end(rest, OrderStatus::Cancelled, reason);
            }
            None if left <= 0.0 => self.end(order, OrderStatus::Filled, ""),
            None => {}
        }
    }

    /// Books a fill of `quantity` shares of `order` at `price` on `bar`: cash, the position,
    /// the trade it closes, the exposure's deltas and the bracket.
    fn book(&mut self, order: &Order, ts: EventTime, price: f64, quantity: f64) {
        let t = order.ticker;
        let signed = order.side.sign() * quantity;
        let commission = if order.kind == OrderKind::Adjust {
            0.0
        } else {
            self.broker.commission(signed, price)
        };
        self.account.cash -= signed * price + commission;
        let part = self.partial.entry(order.id).or_insert((0.0, 0));
        part.0 += quantity;
        part.1 += 1;
        self.ledger.fills.push(Fill {
            order_id: order.id,
            seq: part.1,
            ts,
            ticker: t,
            side: order.side,
            quantity,
            price,
            commission,
        });
        let before = self.account.positions.remove(&t);
        if let Some(p) = &before {
            self.deltas.push(PositionDelta {
                ticker: t,
                cost_cents: p.cost_cents,
                diff: -1,
            });
        }
        let after = match before {
            None => Some(Position {
                quantity: signed,
                entry_price: price,
                entry_ts: ts,
                entry_commission: commission,
                cost_cents: 0,
            }),
            Some(p) if p.quantity * signed > 0.0 => {
                let quantity = p.quantity + signed;
                Some(Position {
                    quantity,
                    entry_price: (p.quantity * p.entry_price + signed * price) / quantity,
                    entry_commission: p.entry_commission + commission,
                    ..p
                })
            }
            Some(p) => {
                let closed = quantity.min(p.quantity.abs());
                let share = closed / p.quantity.abs();
                let part = Position {
                    quantity: p.quantity.signum() * closed,
                    entry_commission: p.entry_commission * share,
                    ..p.clone()
                };
                self.ledger
                    .trades
                    .push(trade(t, &part, ts, price, commission, false));
                let quantity = p.quantity + signed;
                (quantity != 0.0).then_some(Position {
                    quantity,
                    entry_commission: p.entry_commission - part.entry_commission,
                    ..p
                })
            }
        };
        match after {
            Some(mut p) => {
                p.cost_cents = (p.quantity * p.entry_price * 100.0).round() as i64;
                self.deltas.push(PositionDelta {
                    ticker: t,
                    cost_cents: p.cost_cents,
                    diff: 1,
                });
                self.ledger.positions.push(PositionRecord {
                    ts,
                    ticker: t,
                    quantity: p.quantity,
                    entry_price: p.entry_price,
                });
                if !order.kind.closes() {
                    self.protect(order, ts, &p);
                }
                self.account.positions.insert(t, p);
            }
            None => {
                self.ledger.positions.push(PositionRecord {
                    ts,
                    ticker: t,
                    quantity: 0.0,
                    entry_price: 0.0,
                });
                let reason = match order.kind {
                    OrderKind::TakeProfit | OrderKind::StopLoss => "oco",
                    OrderKind::Adjust => "adopted_from_venue",
                    _ => "position_closed",
                };
                self.cancel_legs(t, reason, Some(order.id));
            }
        }
    }

    /// Places (or, after a further part of the entry filled, re-prices) the bracket around `p`.
    fn protect(&mut self, entry: &Order, ts: EventTime, p: &Position) {
        let legs = self.policy.legs(p.quantity.signum(), p.entry_price);
        if let Some(working) = self.brackets.get(&entry.ticker) {
            if self.venue {
                return self.replace_legs(entry.ticker, ts, p.quantity.abs(), &legs);
            }
            for leg in working {
                if let Some((_, Some(ty))) = legs.iter().find(|(k, _)| *k == leg.kind) {
                    self.broker.replace(leg.id, *ty);
                }
            }
            return;
        }
        let side = if p.quantity > 0.0 {
            OrderSide::Sell
        } else {
            OrderSide::Buy
        };
        let mut placed = Vec::new();
        for (kind, ty) in legs {
            let Some(ty) = ty else { continue };
            let mut leg = self.new_order(ts, entry.ticker, side, kind, ty);
            leg.tif = TimeInForce::Gtc;
            leg.parent = Some(entry.id);
            self.send(leg.clone(), p.quantity.abs());
            placed.push(leg);
        }
        if !placed.is_empty() {
            self.brackets.insert(entry.ticker, placed);
        }
    }

    /// Venue mode: a further part of the entry filled, so each working bracket leg is replaced
    /// at the venue by one at the new prices for the whole position (cancel-and-replace: the
    /// replacement is recorded with the leg it replaces, which ends — `cancelled`, reason
    /// `replaced` — when the venue says so; a fill of it that raced the replacement is booked).
    fn replace_legs(
        &mut self,
        ticker: TickerId,
        ts: EventTime,
        quantity: f64,
        legs: &[(OrderKind, Option<OrderType>); 2],
    ) {
        let working = self.brackets.get(&ticker).cloned().unwrap_or_default();
        let mut renewed = Vec::with_capacity(working.len());
        for leg in working {
            let ty = legs.iter().find(|(k, _)| *k == leg.kind).and_then(|l| l.1);
            let (Some(ty), true) = (ty, self.sent.contains_key(&leg.id)) else {
                renewed.push(leg);
                continue;
            };
            self.broker.cancel(leg.id);
            self.cancelling.insert(leg.id, "replaced".to_string());
            let mut new = self.new_order(ts, ticker, leg.side, leg.kind, ty);
            new.tif = leg.tif;
            new.parent = leg.parent;
            self.send_replacing(new.clone(), quantity, Some(leg.id));
            renewed.push(new);
        }
        self.brackets.insert(ticker, renewed);
    }

    /// Takes the rows booked since the last call, so a streaming run can commit them step by step
    /// without keeping its history in memory. Capital and the bar count are copied.
    pub fn drain(&mut self) -> Ledger {
        let l = &mut self.ledger;
        Ledger {
            signals: std::mem::take(&mut l.signals),
            orders: std::mem::take(&mut l.orders),
            submitted: std::mem::take(&mut l.submitted),
            cancels: std::mem::take(&mut l.cancels),
            fills: std::mem::take(&mut l.fills),
            positions: std::mem::take(&mut l.positions),
            equity: std::mem::take(&mut l.equity),
            trades: std::mem::take(&mut l.trades),
            ml_metrics: std::mem::take(&mut l.ml_metrics),
            drifts: std::mem::take(&mut l.drifts),
            capital: l.capital,
            bars: l.bars,
        }
    }

    /// Ends the run: orders never executed are recorded as unfilled, open positions as open trades
    /// marked at their last price. Returns the ledger.
    pub fn finish(mut self) -> Ledger {
        for order in self.broker.drain() {
            let reason = if self.partial.contains_key(&order.id) {
                "run ended with the order working"
            } else {
                "run ended before the next bar"
            };
            self.end(order, OrderStatus::Unfilled, reason);
        }
        for id in std::mem::take(&mut self.cancelling).into_keys() {
            if let Some((order, _)) = self.sent.remove(&id) {
                self.end(
                    order,
                    OrderStatus::Unfilled,
                    "run ended with a cancel asked of the venue",
                );
            }
        }
        let end = self.last_ts.unwrap_or_default();
        for (&t, p) in &self.account.positions {
            let mark = self
                .account
                .marks
                .get(t as usize)
                .copied()
                .unwrap_or(p.entry_price);
            self.ledger.trades.push(trade(t, p, end, mark, 0.0, true));
        }
        self.ledger.orders.sort_by_key(|o| o.order.id);
        self.ledger
    }
}

fn trade(
    ticker: TickerId,
    p: &Position,
    exit_ts: EventTime,
    exit_price: f64,
    exit_commission: f64,
    open: bool,
) -> Trade {
    let commission = p.entry_commission + exit_commission;
    let pnl = p.quantity * (exit_price - p.entry_price) - commission;
    Trade {
        ticker,
        size: p.quantity,
        entry_ts: p.entry_ts,
        entry_price: p.entry_price,
        exit_ts,
        exit_price,
        commission,
        pnl,
        return_pct: pnl / (p.quantity * p.entry_price).abs() * 100.0,
        open,
    }
}

/// What the portfolio operator takes in: the model's signals with their bars, and a venue's
/// updates of the run's orders.
#[derive(Clone, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // One per worker's batch of a time; boxing would allocate each.
enum PortfolioIn {
    Signals(SignalBatch),
    Venue(VenueUpdate),
}

/// The portfolio as shared between its operator and the engine that finishes it.
pub type SharedPortfolio<B> = Rc<RefCell<Option<Portfolio<B>>>>;

/// Extension trait adding the portfolio stage.
pub trait PortfolioExt<'s> {
    /// Sends every signal batch and venue update to worker 0 and steps `portfolio` there, once
    /// per timestamp after the frontier passed it, applying each step's position changes to
    /// `sectors` and appending the rows that changed to `exposure`. The engine takes the
    /// portfolio back to [`Portfolio::finish`] it once the stream has ended. Returns the signal
    /// batches once stepped, at their time: memory is freed fastest by the thread that allocated
    /// it, so the engine hands each back to the worker that built it.
    fn portfolio<B: Broker + 'static>(
        self,
        portfolio: SharedPortfolio<B>,
        updates: Stream<'s, u64, Vec<VenueUpdate>>,
        sectors: SectorExposure,
        exposure: Rc<RefCell<Vec<ExposureRow>>>,
    ) -> Stream<'s, u64, Vec<SignalBatch>>;
}

impl<'s> PortfolioExt<'s> for Stream<'s, u64, Vec<SignalBatch>> {
    fn portfolio<B: Broker + 'static>(
        self,
        portfolio: SharedPortfolio<B>,
        updates: Stream<'s, u64, Vec<VenueUpdate>>,
        mut sectors: SectorExposure,
        exposure: Rc<RefCell<Vec<ExposureRow>>>,
    ) -> Stream<'s, u64, Vec<SignalBatch>> {
        let mut scratch = MergeScratch::default();
        let mut venue: Vec<VenueUpdate> = Vec::new();
        let inputs = self
            .map(PortfolioIn::Signals)
            .concat(updates.map(PortfolioIn::Venue));
        by_time(
            inputs,
            Exchange::new(|_b: &PortfolioIn| 0),
            "Portfolio",
            move |t, items, spent: &mut Vec<SignalBatch>| {
                venue.clear();
                let mut batches = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        PortfolioIn::Signals(sb) => batches.push(sb),
                        PortfolioIn::Venue(u) => venue.push(u),
                    }
                }
                // Updates of one time in a fixed order, however they arrived.
                venue.sort_by_key(VenueUpdate::sort_key);
                if let Some(p) = portfolio.borrow_mut().as_mut() {
                    // Batches arrive from every worker in any order: sort what they carry.
                    let mut tr: Vec<_> = batches
                        .iter()
                        .flat_map(|b| b.trainings.iter().cloned())
                        .collect();
                    tr.sort_by_key(|(t, r)| (r.installed_at, *t));
                    p.ledger.ml_metrics.extend(tr);
                    let mut dr: Vec<_> = batches
                        .iter()
                        .flat_map(|b| b.drifts.iter().cloned())
                        .collect();
                    dr.sort_by_key(|(t, r)| (r.ts, *t, r.feature));
                    p.ledger.drifts.extend(dr);
                    let rows = Merged::new(&batches, &mut scratch);
                    let ts = crate::time::event_time(t);
                    p.step_rows(ts, &rows, &venue);
                    sectors.apply(ts, &p.deltas, &mut exposure.borrow_mut());
                    p.deltas.clear();
                }
                *spent = batches;
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(tickers: &[TickerId]) -> SignalBatch {
        let mut b = crate::bar::BarBatch::default();
        for &t in tickers {
            let p = 100.0 + f64::from(t);
            b.push(Bar {
                ticker: t,
                ts: 7,
                open: p,
                high: p + 1.0,
                low: p - 1.0,
                close: p + 0.5,
                volume: 10.0,
            });
        }
        SignalBatch {
            bars: b.into(),
            signal: vec![None; tickers.len()],
            payoff: tickers.iter().map(|&t| f64::from(t)).collect(),
            ..SignalBatch::default()
        }
    }

    #[test]
    fn merged_rows_find_each_ticker_and_give_signals_in_ticker_order() {
        let mut batches = [batch(&[1, 4, 6]), batch(&[]), batch(&[0, 5, 2])];
        let flat = Signal {
            target: Target::Flat,
            confidence: 0.5,
            predicted_return: f64::NAN,
        };
        batches[0].signal[2] = Some(flat);
        batches[2].signal[0] = Some(flat);
        batches[2].signal[2] = Some(flat);
        batches.iter_mut().for_each(SignalBatch::index_signals);
        let mut scratch = MergeScratch::default();
        for _ in 0..2 {
            // A second indexing of the same scratch forgets nothing it should not.
            let rows = Merged::new(&batches, &mut scratch);
            assert_eq!(rows.len(), 6);
            let mut seen = Vec::new();
            rows.closes(|t, c| seen.push((t, c)));
            seen.sort_by_key(|s| s.0);
            let want: Vec<_> = [0, 1, 2, 4, 5, 6].map(|t| (t, 100.5 + f64::from(t))).into();
            assert_eq!(seen, want);
            for t in [0, 1, 2, 4, 5, 6] {
                let k: Vec<usize> = rows.rows_of(t).collect();
                assert_eq!(k.len(), 1, "ticker {t}");
                assert_eq!(rows.bar(k[0]).ticker, t);
                assert_eq!(rows.bar(k[0]).open, 100.0 + f64::from(t));
                assert_eq!(rows.payoff(k[0]), f64::from(t));
            }
            assert_eq!(rows.rows_of(3).count(), 0);
            assert_eq!(rows.rows_of(99).count(), 0);
            let signalled: Vec<TickerId> = rows.signalled().map(|k| rows.bar(k).ticker).collect();
            assert_eq!(signalled, [0, 2, 6]);
        }
        // A ticker twice in one time (the quality gate refuses it): both rows, in row order.
        let twice = [batch(&[3, 1]), batch(&[3])];
        let rows = Merged::new(&twice, &mut scratch);
        assert_eq!(rows.rows_of(3).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(rows.rows_of(1).collect::<Vec<_>>(), [1]);
        assert_eq!(rows.rows_of(4).count(), 0);
    }

    #[test]
    fn a_ledger_splits_by_each_rows_time_and_appends_back_in_order() {
        let point = |ts| EquityPoint {
            ts,
            cash: 1.0,
            positions_value: 0.0,
            equity: 1.0,
            open_positions: 0,
            gross_value: 0.0,
            benchmark_return: 0.0,
        };
        let mut l = Ledger {
            equity: (1..=5).map(point).collect(),
            bars: 9,
            ..Ledger::default()
        };
        let whole = l.clone();
        let later = l.split_after(3);
        assert_eq!(l.equity.iter().map(|p| p.ts).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            later.equity.iter().map(|p| p.ts).collect::<Vec<_>>(),
            [4, 5]
        );
        assert_eq!(later.bars, 9);
        l.append(later);
        assert_eq!(l, whole);
    }

    #[test]
    fn floor_div_matches_python() {
        assert_eq!(py_floor_div(10000.0 * ALL_IN, 186.31 * 1.001), 53.0);
        assert_eq!(py_floor_div(7.0, 2.0), 3.0);
        assert_eq!(py_floor_div(-7.0, 2.0), -4.0);
        assert_eq!(py_floor_div(0.3, 0.1), 2.0, "Python: 0.3 // 0.1 == 2.0");
    }
}
