//! The tearsheet of a finished run: the strategy's daily returns against its benchmark's, with
//! quantstats' full set of figures ([`stats`]), the series the report's charts draw and the tables
//! it lists. Built from the run's ledger alone, so a backtest's report and anything else reading
//! a ledger say the same thing.
//!
//! Days are UTC calendar days: a run on intraday bars is measured on the equity at each day's
//! last bar, so 252 periods a year holds whatever the bar size.

pub mod normal;
pub mod stats;

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use crate::bar::Tickers;
use crate::operators::exposure::ExposureRow;
use crate::operators::portfolio::{Ledger, OrderStatus};
use crate::reject::Reject;
use crate::time::{EventTime, date_of, format_time};

pub use stats::{Relative, Stats};

/// Everything the report shows, as numbers.
#[derive(Debug, Clone, Serialize)]
pub struct Tearsheet {
    /// What the strategy is measured against, as the report names it.
    pub benchmark: String,
    /// The strategy's figures.
    pub strategy: Stats,
    /// The benchmark's figures over the same days.
    pub bench: Stats,
    /// Strategy against benchmark.
    pub relative: Relative,
    /// Daily series.
    pub daily: Daily,
    /// Compounded return per year and month (`None`: no return that month).
    pub monthly: Vec<MonthRow>,
    /// The benchmark's.
    pub bench_monthly: Vec<MonthRow>,
    /// Strategy and benchmark compounded returns per calendar year.
    pub yearly: Vec<(i32, f64, f64)>,
    /// Histogram of the daily returns: bin lower edges and counts.
    pub histogram: Histogram,
    /// Realized and open P&L per ticker.
    pub tickers: Vec<TickerPnl>,
    /// Every round trip.
    pub trades: Vec<TradeRow>,
    /// Orders by final status.
    pub orders: BTreeMap<String, usize>,
    /// Refused, cancelled and expired orders by reason.
    pub order_reasons: Vec<(String, String, usize)>,
    /// Quarantined and flagged rows by reason and action.
    pub quality: Vec<(String, String, usize)>,
    /// Sector exposure (entry value) after each change, per sector.
    pub sectors: SectorSeries,
    /// ML runs: out-of-sample AUC per model over time, feature importance, drift events.
    pub ml: Option<MlSheet>,
}

/// The daily series (one point per UTC day with a bar; the first day has return 0).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Daily {
    /// Time of the day's last bar (Unix seconds).
    pub t: Vec<EventTime>,
    /// Equity at the day's last bar.
    pub equity: Vec<f64>,
    /// Strategy's compounded return since the first day.
    pub cumulative: Vec<f64>,
    /// Benchmark's compounded return since the first day.
    pub bench_cumulative: Vec<f64>,
    /// Strategy's drawdown from its running peak.
    pub drawdown: Vec<f64>,
    /// Benchmark's drawdown.
    pub bench_drawdown: Vec<f64>,
    /// Strategy's daily return.
    pub returns: Vec<f64>,
    /// Rolling 6-month (126-day) Sharpe ratio.
    pub sharpe_6m: Vec<f64>,
    /// Rolling 12-month (252-day) Sharpe ratio.
    pub sharpe_12m: Vec<f64>,
    /// Rolling 6-month annualized volatility.
    pub vol_6m: Vec<f64>,
    /// Rolling 12-month annualized volatility.
    pub vol_12m: Vec<f64>,
    /// Benchmark's rolling 6-month volatility.
    pub bench_vol_6m: Vec<f64>,
    /// Gross exposure: marked value of the positions without sign, over equity.
    pub gross: Vec<f64>,
    /// Net exposure: signed marked value over equity.
    pub net: Vec<f64>,
}

/// One year of the monthly heatmap.
#[derive(Debug, Clone, Serialize)]
pub struct MonthRow {
    /// Calendar year.
    pub year: i32,
    /// January to December.
    pub months: [Option<f64>; 12],
    /// The year compounded.
    pub year_return: f64,
}

/// A histogram.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Histogram {
    /// Lower edge of each bin; the bins are `width` wide.
    pub lower: Vec<f64>,
    /// Bin width.
    pub width: f64,
    /// Returns in each bin.
    pub counts: Vec<usize>,
}

/// P&L of one ticker's round trips.
#[derive(Debug, Clone, Serialize)]
pub struct TickerPnl {
    /// Ticker.
    pub ticker: String,
    /// Closed trades.
    pub trades: usize,
    /// Closed trades with a positive P&L.
    pub wins: usize,
    /// P&L of the closed trades, after commissions.
    pub realized: f64,
    /// P&L of the position open at the end, marked at the last close.
    pub open: f64,
}

/// One round trip, for the trade list.
#[derive(Debug, Clone, Serialize)]
pub struct TradeRow {
    /// Ticker.
    pub ticker: String,
    /// `long` or `short`.
    pub side: &'static str,
    /// Shares (absolute).
    pub size: f64,
    /// Entry time.
    pub entry: String,
    /// Entry price.
    pub entry_price: f64,
    /// Exit time (the last bar's when open).
    pub exit: String,
    /// Exit price (the last close when open).
    pub exit_price: f64,
    /// Calendar days held.
    pub days: i64,
    /// P&L after commissions.
    pub pnl: f64,
    /// Return on the entry value, in percent.
    pub return_pct: f64,
    /// Still open at the end.
    pub open: bool,
}

/// Sector exposure over time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SectorSeries {
    /// Times of the changes.
    pub t: Vec<EventTime>,
    /// Per sector, its signed entry value at each time.
    pub sectors: Vec<(String, Vec<f64>)>,
}

/// What an ML run adds.
#[derive(Debug, Clone, Serialize)]
pub struct MlSheet {
    /// Training times.
    pub t: Vec<EventTime>,
    /// Per model (each base model, `ensemble`, `baseline`), its AUC at each training time,
    /// averaged over the tickers trained then (`None`: not scored).
    pub auc: Vec<(String, Vec<Option<f64>>)>,
    /// Mean importance of each feature over all trainings, largest first.
    pub importance: Vec<(String, f64)>,
    /// Drift events: time, ticker, feature, divergence.
    pub drifts: Vec<(EventTime, String, String, f64)>,
}

/// The days of a ledger's equity: the last point of each UTC day, with the benchmark's returns of
/// the day's points compounded.
struct Days {
    t: Vec<EventTime>,
    dates: Vec<NaiveDate>,
    equity: Vec<f64>,
    gross: Vec<f64>,
    net: Vec<f64>,
    bench: Vec<f64>,
}

fn days(ledger: &Ledger) -> Days {
    let mut d = Days {
        t: Vec::new(),
        dates: Vec::new(),
        equity: Vec::new(),
        gross: Vec::new(),
        net: Vec::new(),
        bench: Vec::new(),
    };
    for p in &ledger.equity {
        let date = date_of(p.ts);
        if d.dates.last() != Some(&date) {
            d.t.push(p.ts);
            d.dates.push(date);
            d.equity.push(p.equity);
            d.gross.push(p.gross_value);
            d.net.push(p.positions_value);
            d.bench.push(p.benchmark_return);
            continue;
        }
        let i = d.t.len() - 1;
        d.t[i] = p.ts;
        d.equity[i] = p.equity;
        d.gross[i] = p.gross_value;
        d.net[i] = p.positions_value;
        d.bench[i] = (1.0 + d.bench[i]) * (1.0 + p.benchmark_return) - 1.0;
    }
    d
}

fn cumulative(r: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    std::iter::once(0.0)
        .chain(r.iter().map(|v| {
            acc *= 1.0 + v;
            acc - 1.0
        }))
        .collect()
}

fn histogram(r: &[f64], bins: usize) -> Histogram {
    let (lo, hi) = r
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if r.is_empty() || hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return Histogram::default();
    }
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in r {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    Histogram {
        lower: (0..bins).map(|i| lo + width * i as f64).collect(),
        width,
        counts,
    }
}

fn monthly_rows(r: &[f64], dates: &[NaiveDate]) -> Vec<MonthRow> {
    let mut by: BTreeMap<i32, ([Vec<f64>; 12], Vec<f64>)> = BTreeMap::new();
    for (v, d) in r.iter().zip(dates) {
        let e = by.entry(d.year()).or_default();
        e.0[d.month0() as usize].push(*v);
        e.1.push(*v);
    }
    by.into_iter()
        .map(|(year, (months, all))| MonthRow {
            year,
            months: months.map(|m| (!m.is_empty()).then(|| stats::comp(&m))),
            year_return: stats::comp(&all),
        })
        .collect()
}

fn ml_sheet(ledger: &Ledger, tickers: &Tickers) -> Option<MlSheet> {
    if ledger.ml_metrics.is_empty() && ledger.drifts.is_empty() {
        return None;
    }
    let mut by_time: BTreeMap<EventTime, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut models: Vec<String> = Vec::new();
    let mut importance: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (_, rec) in &ledger.ml_metrics {
        let at = by_time.entry(rec.trained_at).or_default();
        for (model, s) in &rec.scores {
            if !models.contains(model) {
                models.push(model.clone());
            }
            if s.roc_auc.is_finite() {
                at.entry(model.clone()).or_default().push(s.roc_auc);
            }
        }
        for f in &rec.selection {
            let e = importance.entry(f.feature.clone()).or_default();
            e.0 += f.importance;
            e.1 += 1;
        }
    }
    let t: Vec<EventTime> = by_time.keys().copied().collect();
    let auc = models
        .into_iter()
        .map(|m| {
            let ys = by_time
                .values()
                .map(|at| at.get(&m).map(|v| stats::mean(v)))
                .collect();
            (m, ys)
        })
        .collect();
    let mut importance: Vec<(String, f64)> = importance
        .into_iter()
        .map(|(f, (s, n))| (f, s / n as f64))
        .collect();
    importance.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let drifts = ledger
        .drifts
        .iter()
        .map(|(ticker, d)| {
            (
                d.ts,
                tickers.name(*ticker).to_string(),
                d.name.clone(),
                d.kl,
            )
        })
        .collect();
    Some(MlSheet {
        t,
        auc,
        importance,
        drifts,
    })
}

fn sector_series(rows: &[ExposureRow]) -> SectorSeries {
    let mut t: Vec<EventTime> = rows.iter().map(|r| r.ts).collect();
    t.dedup();
    let mut sectors: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for r in rows {
        sectors
            .entry(r.sector.as_str())
            .or_insert_with(|| vec![f64::NAN; t.len()]);
    }
    for r in rows {
        if let (Ok(i), Some(s)) = (t.binary_search(&r.ts), sectors.get_mut(r.sector.as_str())) {
            s[i] = r.cost_cents as f64 / 100.0;
        }
    }
    // A sector keeps its value until it changes (rows come only at changes).
    for s in sectors.values_mut() {
        let mut last = 0.0;
        for v in s.iter_mut() {
            if v.is_nan() {
                *v = last;
            } else {
                last = *v;
            }
        }
    }
    SectorSeries {
        t,
        sectors: sectors
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    }
}

/// Builds the tearsheet of a run. `benchmark` is how the report names it.
pub fn build(
    benchmark: &str,
    tickers: &Tickers,
    ledger: &Ledger,
    quarantine: &[Reject],
    exposure: &[ExposureRow],
) -> Tearsheet {
    let d = days(ledger);
    let r: Vec<f64> = d.equity.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let b: Vec<f64> = d.bench.iter().skip(1).copied().collect();
    let dates: Vec<NaiveDate> = d.dates.iter().skip(1).copied().collect();
    let strategy = stats::compute(&r, &dates);
    let bench = stats::compute(&b, &dates);
    let relative = stats::relative(&r, &b);
    let pad = |v: Vec<f64>| std::iter::once(f64::NAN).chain(v).collect::<Vec<f64>>();
    let zero_first = |v: Vec<f64>| std::iter::once(0.0).chain(v).collect::<Vec<f64>>();
    let daily = Daily {
        t: d.t.clone(),
        equity: d.equity.clone(),
        cumulative: cumulative(&r),
        bench_cumulative: cumulative(&b),
        drawdown: zero_first(stats::drawdown_series(&r)),
        bench_drawdown: zero_first(stats::drawdown_series(&b)),
        returns: zero_first(r.clone()),
        sharpe_6m: pad(stats::rolling_sharpe(&r, 126)),
        sharpe_12m: pad(stats::rolling_sharpe(&r, 252)),
        vol_6m: pad(stats::rolling_volatility(&r, 126)),
        vol_12m: pad(stats::rolling_volatility(&r, 252)),
        bench_vol_6m: pad(stats::rolling_volatility(&b, 126)),
        gross: d.gross.iter().zip(&d.equity).map(|(g, e)| g / e).collect(),
        net: d.net.iter().zip(&d.equity).map(|(n, e)| n / e).collect(),
    };
    let monthly = monthly_rows(&r, &dates);
    let bench_monthly = monthly_rows(&b, &dates);
    let bench_years: BTreeMap<i32, f64> = bench_monthly
        .iter()
        .map(|m| (m.year, m.year_return))
        .collect();
    let yearly = monthly
        .iter()
        .map(|m| {
            (
                m.year,
                m.year_return,
                bench_years.get(&m.year).copied().unwrap_or(0.0),
            )
        })
        .collect();
    let mut per: BTreeMap<String, TickerPnl> = BTreeMap::new();
    let trades = ledger
        .trades
        .iter()
        .map(|t| {
            let name = tickers.name(t.ticker).to_string();
            let e = per.entry(name.clone()).or_insert_with(|| TickerPnl {
                ticker: name.clone(),
                trades: 0,
                wins: 0,
                realized: 0.0,
                open: 0.0,
            });
            if t.open {
                e.open += t.pnl;
            } else {
                e.trades += 1;
                e.wins += usize::from(t.pnl > 0.0);
                e.realized += t.pnl;
            }
            TradeRow {
                ticker: name,
                side: if t.size < 0.0 { "short" } else { "long" },
                size: t.size.abs(),
                entry: format_time(t.entry_ts),
                entry_price: t.entry_price,
                exit: format_time(t.exit_ts),
                exit_price: t.exit_price,
                days: (date_of(t.exit_ts) - date_of(t.entry_ts)).num_days(),
                pnl: t.pnl,
                return_pct: t.return_pct,
                open: t.open,
            }
        })
        .collect();
    let mut tickers_pnl: Vec<TickerPnl> = per.into_values().collect();
    tickers_pnl.sort_by(|a, b| (b.realized + b.open).total_cmp(&(a.realized + a.open)));
    let mut orders = BTreeMap::new();
    let mut reasons: BTreeMap<(String, String), usize> = BTreeMap::new();
    for o in &ledger.orders {
        let status = o.status.as_str().to_string();
        *orders.entry(status.clone()).or_insert(0) += 1;
        if o.status != OrderStatus::Filled && !o.reason.is_empty() {
            *reasons.entry((status, o.reason.clone())).or_insert(0) += 1;
        }
    }
    let mut quality: BTreeMap<(String, String), usize> = BTreeMap::new();
    for q in quarantine {
        *quality
            .entry((q.reason.as_str().to_string(), q.action.as_str().to_string()))
            .or_insert(0) += 1;
    }
    Tearsheet {
        benchmark: benchmark.to_string(),
        strategy,
        bench,
        relative,
        daily,
        monthly,
        bench_monthly,
        yearly,
        histogram: histogram(&r, 50),
        tickers: tickers_pnl,
        trades,
        orders,
        order_reasons: reasons.into_iter().map(|((s, r), n)| (s, r, n)).collect(),
        quality: quality.into_iter().map(|((r, a), n)| (r, a, n)).collect(),
        sectors: sector_series(exposure),
        ml: ml_sheet(ledger, tickers),
    }
}
