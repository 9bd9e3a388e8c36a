//! Pipeline files (`pipelines/*.toml`): the typed form of a run.
//!
//! A file deserializes straight into these types (`deny_unknown_fields` everywhere, tagged enums for
//! every choice), then [`Pipeline::validate`] checks what serde cannot (positive periods, model inputs
//! that name declared features). Every error names the file, line and column.

use std::path::{Path, PathBuf};

use crate::order::{Commission, EntryType, TimeInForce};
pub use crate::time::TimeText;
use serde::Deserialize;
use toml::Spanned;

mod alerts;
mod drift;
mod features;
pub mod overrides;
pub mod provider;

pub use alerts::{AlertsSpec, ChannelSpec, TelegramSpec};
pub use drift::DriftSpec;
pub use features::{FeatureSpec, MAX_PERIOD, talib_standard};

/// Errors from loading a pipeline file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key or a value of the wrong type, or fails validation.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A `--set` that cannot be applied, or a pipeline its overrides make invalid (the place
    /// is in the resolved text, which a run writes as `pipeline.toml`).
    #[error("{path}: {message}")]
    Override {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl crate::fault::Blame for ConfigError {
    /// A pipeline file is the user's input, whether it is missing or wrong.
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::Input
    }
}

/// A whole pipeline: source → quality → features → model → risk → broker → outputs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Name of the pipeline; prefixes run ids.
    pub name: String,
    /// Where bars come from.
    pub source: SourceSpec,
    /// Quality gate rules.
    #[serde(default)]
    pub quality: QualitySpec,
    /// Features computed per ticker, in order.
    #[serde(default)]
    pub features: Vec<Spanned<FeatureSpec>>,
    /// The signal model.
    pub model: ModelSpec,
    /// The drift operator between the features and the model (see [`Pipeline::drift`]).
    #[serde(default)]
    pub drift: Option<DriftSpec>,
    /// Risk and sizing.
    #[serde(default)]
    pub risk: RiskSpec,
    /// The broker that executes orders.
    #[serde(default)]
    pub broker: BrokerSpec,
    /// Where results go.
    #[serde(default)]
    pub outputs: OutputSpec,
    /// Fundamentals and sentiment joined as of each bar's time.
    #[serde(default)]
    pub fundamentals: FundamentalsSpec,
    /// Caches.
    #[serde(default)]
    pub cache: CacheSpec,
    /// Alert channels (see [`AlertsSpec`]); the environment's when absent.
    #[serde(default)]
    pub alerts: Option<Spanned<AlertsSpec>>,
}

/// Caches that spare a repeated run or a restart work already done.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSpec {
    /// Directory of the feature cache (per ticker: kernel state and rows, keyed by the feature
    /// set); no feature cache when absent.
    pub features: Option<String>,
}

/// Fundamentals (FMP) and news sentiment (Finnhub) from recorded responses, joined to each bar as
/// of its time (see `sources::fundamentals` for when each value becomes public).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FundamentalsSpec {
    /// Directory holding `<SYMBOL>/ratios.json`, `key-metrics.json`, `income-statement.json`.
    pub fmp_dir: Option<String>,
    /// Directory holding `news-sentiment/<SYMBOL>/<fetched-at>.json`.
    pub finnhub_dir: Option<String>,
    /// FMP fields (e.g. `priceToEarningsRatio`, `priceToBookRatio`, `debtToEquityRatio`,
    /// `returnOnEquity`, `eps`, `epsGrowth`), each a column `FMP_<field>`.
    pub fmp: Vec<String>,
    /// Finnhub news-sentiment fields, each a column `FINNHUB_<field>`.
    pub finnhub: Vec<String>,
    /// Where `fdp fetch` gets them: `fmp` and `finnhub` entries with tier, budgets, base URL
    /// and symbols as under `[source]` (default: FMP free, Finnhub premium — sentiment has no
    /// free tier).
    pub providers: Vec<ProviderEntry>,
    /// FMP statement period fetched: `annual` (default), `quarter`, `FY`, `Q1`..`Q4`.
    pub fmp_period: Option<String>,
    /// Periods per statement fetched, newest first (FMP's default when absent).
    pub fmp_limit: Option<u32>,
    /// Redis of the fetch's limiters, breakers and budgets when the source is not
    /// `kind = "providers"` (whose own settings apply otherwise; default `REDIS_URL`).
    pub redis_url: Option<String>,
    /// Their key prefix in that case (default `fdp`, shared with providers sources).
    pub prefix: Option<String>,
}

/// The Finnhub `/news-sentiment` fields a pipeline may ask for.
pub const FINNHUB_FIELDS: [&str; 7] = [
    "companyNewsScore",
    "sectorAverageBullishPercent",
    "sectorAverageNewsScore",
    "bullishPercent",
    "bearishPercent",
    "buzz",
    "articlesInLastWeek",
];

impl FundamentalsSpec {
    /// The fact columns asked for.
    pub fn columns(&self) -> crate::fact::FactColumns {
        crate::fact::FactColumns {
            fmp: self.fmp.clone(),
            finnhub: self.finnhub.clone(),
        }
    }
}

/// Where bars come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceSpec {
    /// Replay of history files.
    Files {
        /// File layout.
        format: FileFormat,
        /// Paths or glob patterns, relative to the pipeline file's directory.
        paths: Vec<String>,
        /// Optional universe file (a constituents CSV); only its tickers are read.
        #[serde(default)]
        universe: Option<String>,
        /// Optional explicit ticker filter.
        #[serde(default)]
        tickers: Vec<String>,
        /// First date included (`YYYY-MM-DD`), inclusive.
        #[serde(default)]
        start: Option<TimeText>,
        /// Last date included, inclusive.
        #[serde(default)]
        end: Option<TimeText>,
    },
    /// A Redis bar store: one sorted set per ticker, `<prefix>:bars:<TICKER>`, scored by event
    /// time, members `ts,open,high,low,close,volume`.
    Redis {
        /// Redis URL (default: `REDIS_URL`, else `redis://127.0.0.1:6379`).
        #[serde(default)]
        url: Option<String>,
        /// Key prefix.
        #[serde(default = "default_prefix")]
        prefix: String,
        /// The tickers to read.
        tickers: Vec<String>,
        /// First date included (`YYYY-MM-DD`), inclusive.
        #[serde(default)]
        start: Option<TimeText>,
        /// Last date included, inclusive.
        #[serde(default)]
        end: Option<TimeText>,
    },
    /// Market-data providers over HTTP, in priority order: each ticker's bars come from the
    /// first provider whose circuit breaker is closed and whose rate limiter admits the request,
    /// the next one when it fails. Keys come from the environment only (`FDP_<PROVIDER>_KEY`).
    Providers {
        /// The providers, first choice first.
        providers: Vec<ProviderEntry>,
        /// The tickers to fetch.
        tickers: Vec<String>,
        /// Bar length: `1d`, `1h`, `5m`, ...
        #[serde(default = "default_interval")]
        interval: String,
        /// Split- and dividend-adjusted prices where the provider offers them.
        #[serde(default)]
        adjusted: bool,
        /// First date included (`YYYY-MM-DD`), inclusive.
        start: TimeText,
        /// Last date included, inclusive.
        end: TimeText,
        /// Redis holding the shared rate limiters and circuit breakers (default: `REDIS_URL`,
        /// else `redis://127.0.0.1:6379`).
        #[serde(default)]
        redis_url: Option<String>,
        /// Key prefix of the limiters and breakers.
        #[serde(default = "default_prefix")]
        prefix: String,
        /// Seconds a request may take.
        #[serde(default = "default_provider_timeout")]
        timeout_seconds: u64,
        /// Consecutive failures that open a provider's breaker.
        #[serde(default = "default_breaker_failures")]
        breaker_failures: u32,
        /// Seconds an open breaker refuses before its probe.
        #[serde(default = "default_breaker_cooldown")]
        breaker_cooldown_seconds: u64,
        /// Money the run may spend on providers per UTC day: a warning at 80 %, every provider
        /// refused at 100 % (none by default).
        #[serde(default)]
        daily_spend: Option<f64>,
        /// Seconds the response cache keeps an answer (0: no cache).
        #[serde(default = "default_cache_ttl")]
        cache_ttl_seconds: u64,
        /// Provider requests in flight at once across the process.
        #[serde(default = "default_in_flight")]
        max_in_flight: usize,
    },
    /// Seeded synthetic random walk with volatility regimes and jumps.
    Synthetic {
        /// Number of tickers.
        tickers: usize,
        /// Bars per ticker.
        bars: usize,
        /// Random seed.
        #[serde(default = "default_seed")]
        seed: u64,
        /// First date (`YYYY-MM-DD`); bars follow on weekdays.
        #[serde(default)]
        start: Option<TimeText>,
    },
}

/// The providers source's default (also the fundamentals fetch's when the source is another).
pub(crate) fn default_prefix() -> String {
    "fdp".into()
}

fn default_interval() -> String {
    "1d".into()
}

/// The providers source's default (also the fundamentals fetch's when the source is another).
pub(crate) fn default_provider_timeout() -> u64 {
    20
}

/// The providers source's default (also the fundamentals fetch's when the source is another).
pub(crate) fn default_breaker_failures() -> u32 {
    5
}

/// The providers source's default (also the fundamentals fetch's when the source is another).
pub(crate) fn default_breaker_cooldown() -> u64 {
    60
}

/// One provider of a `kind = "providers"` source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderEntry {
    /// `yahoo` or `alpha_vantage`.
    pub name: String,
    /// Base URL (a proxy's); default `FDP_<PROVIDER>_BASE_URL`, else the provider's host.
    #[serde(default)]
    pub base_url: Option<String>,
    /// `free` (default) or `premium`: which documented limits the rate limiter enforces. Also
    /// the name of the key in Redis (limiter, budgets), never the key itself.
    #[serde(default = "default_tier")]
    pub tier: String,
    /// Request budget per calendar minute (the tier manager; none by default).
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    /// Request budget per UTC day (default: the tier's documented daily quota, where it has one).
    #[serde(default)]
    pub requests_per_day: Option<u32>,
    /// Credits one request costs (Twelve Data counts one per symbol).
    #[serde(default = "default_credits")]
    pub credits_per_request: u32,
    /// Credit budget per calendar minute.
    #[serde(default)]
    pub credits_per_minute: Option<u32>,
    /// Credit budget per UTC day.
    #[serde(default)]
    pub credits_per_day: Option<u32>,
    /// Money one request costs, counted against `source.daily_spend`.
    #[serde(default)]
    pub cost_per_request: f64,
    /// The provider's spelling of the run's tickers where it differs (`EURUSD = "EUR/USD"` for
    /// Twelve Data, `"C:EURUSD"` for Polygon, `"EURUSD=X"` for Yahoo).
    #[serde(default)]
    pub symbols: std::collections::BTreeMap<String, String>,
}

impl ProviderEntry {
    /// An entry with only a name and a tier (the defaults of every other setting).
    pub fn named(name: &str, tier: &str) -> ProviderEntry {
        ProviderEntry {
            name: name.to_string(),
            base_url: None,
            tier: tier.to_string(),
            requests_per_minute: None,
            requests_per_day: None,
            credits_per_request: default_credits(),
            credits_per_minute: None,
            credits_per_day: None,
            cost_per_request: 0.0,
            symbols: std::collections::BTreeMap::new(),
        }
    }
}

fn default_credits() -> u32 {
    1
}

fn default_cache_ttl() -> u64 {
    86_400
}

/// The providers source's default (also the fundamentals fetch's when the source is another).
pub(crate) fn default_in_flight() -> usize {
    5
}

fn default_tier() -> String {
    "free".into()
}

fn default_seed() -> u64 {
    42
}

/// File layouts of `../shared/data/real`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// Kaggle S&P 500 per-ticker files: `date,open,high,low,close,volume,Name`.
    Kaggle,
    /// backtesting.py: `,Open,High,Low,Close,Volume` (the first column is the date).
    BacktestingPy,
    /// Yahoo daily files as in backtrader's samples: `Date,Open,High,Low,Close,Adj Close,Volume`.
    Yahoo,
    /// backtrader's own CSV: `Date[,Time],Open,High,Low,Close,Volume,OpenInterest`.
    Backtrader,
    /// CryptoDataDownload: a banner line, then `unix,date,symbol,open,high,low,close,...`, newest first.
    Cryptodatadownload,
    /// Parquet with columns `time, ticker, open, high, low, close, volume`.
    Parquet,
}

/// Quality gate rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualitySpec {
    /// Trading calendar used to detect missing sessions.
    pub calendar: CalendarKind,
    /// A close-to-close move larger than this fraction is an outlier.
    pub max_move: f64,
    /// What happens to an outlier.
    pub outlier_action: OutlierAction,
    /// A close more than this many times the previous close (or less than its inverse) is
    /// impossible on its face (a bad tick such as 1e20) and rejected, unless the bar after it
    /// confirms the new level (a reverse split in unadjusted data). `inf` turns it off.
    pub max_jump: f64,
}

impl Default for QualitySpec {
    fn default() -> Self {
        QualitySpec {
            calendar: CalendarKind::Nyse,
            max_move: 0.4,
            outlier_action: OutlierAction::Flag,
            max_jump: 100.0,
        }
    }
}

/// Calendars for gap detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarKind {
    /// New York Stock Exchange sessions (weekdays less NYSE holidays and closures).
    Nyse,
    /// Every weekday.
    Weekdays,
    /// Every calendar day (crypto).
    Daily,
    /// No gap detection (intraday or irregular data).
    None,
}

/// Outlier handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutlierAction {
    /// Record the outlier in the quarantine output and let the bar through.
    Flag,
    /// Quarantine the bar.
    Reject,
}

/// The signal model slot: a transparent rule model now, the ML ensemble later.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Long when `fast` crosses above `slow` (strictly, both bars), flat (or short) when it crosses below.
    Crossover {
        /// Fast feature column, e.g. `SMA_10`.
        fast: String,
        /// Slow feature column, e.g. `SMA_30`.
        slow: String,
        /// Go short on the down-cross instead of flat.
        #[serde(default)]
        short: bool,
        /// Probability of a winning trade that the user assigns to this rule (Kelly's p).
        #[serde(default = "default_confidence")]
        confidence: f64,
    },
    /// Long when `feature` is beyond `enter`, flat (or short) when beyond `exit`.
    Threshold {
        /// Feature column, e.g. `RSI_14`.
        feature: String,
        /// `below`: enter long when the value is below `enter` (mean reversion); `above`: momentum.
        long_when: Side,
        /// Entry level.
        enter: f64,
        /// Exit level.
        exit: f64,
        /// Go short at the exit level instead of flat.
        #[serde(default)]
        short: bool,
        /// Kelly's p for this rule.
        #[serde(default = "default_confidence")]
        confidence: f64,
    },
    /// The stacking ensemble, trained walk-forward per ticker on forward-return labels
    /// (`kind = "ensemble"`; `"ml"` is its older name).
    #[serde(rename = "ensemble", alias = "ml")]
    Ml(MlSpec),
}

/// Settings of the ML ensemble (`[model] kind = "ensemble"`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlSpec {
    /// Feature columns the model reads (default: every declared feature column).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Label horizon in bars.
    #[serde(default = "default_horizon")]
    pub horizon: usize,
    /// Returns within ±dead_zone get no class.
    #[serde(default)]
    pub dead_zone: f64,
    /// Retrain after this many bars of the ticker (and on a drift event).
    #[serde(default = "default_retrain_every")]
    pub retrain_every: usize,
    /// Labeled samples needed before the first training.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// Go long when `P(up)` is above this.
    #[serde(default = "default_ml_enter")]
    pub enter: f64,
    /// Go flat when `P(up)` is below this.
    #[serde(default = "default_ml_exit")]
    pub exit: f64,
    /// Trees of the random forest.
    #[serde(default = "default_trees")]
    pub trees: usize,
    /// Seed of training.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Drift window in bars, when no `[drift]` section declares the drift operator.
    #[serde(default = "default_drift_window")]
    pub drift_window: usize,
    /// KL divergence that triggers a retrain, when no `[drift]` section declares the operator.
    #[serde(default = "default_drift_threshold")]
    pub drift_threshold: f64,
    /// Inputs each training keeps: the top `select` by the combined rank of forest importance,
    /// mutual information and ANOVA F (0: all of them).
    #[serde(default)]
    pub select: usize,
    /// Model registry directory, relative to the repository root like every path (default:
    /// `<outputs.dir>/models/<pipeline name>`). A streaming run with a database stores models in
    /// PostgreSQL instead.
    #[serde(default)]
    pub registry: Option<String>,
    /// Days a registered model is kept.
    #[serde(default = "default_ttl_days")]
    pub ttl_days: u32,
}

fn default_ttl_days() -> u32 {
    30
}

fn default_horizon() -> usize {
    5
}
fn default_retrain_every() -> usize {
    250
}
fn default_min_samples() -> usize {
    250
}
fn default_ml_enter() -> f64 {
    0.55
}
fn default_ml_exit() -> f64 {
    0.45
}
fn default_trees() -> usize {
    30
}
fn default_drift_window() -> usize {
    100
}
fn default_drift_threshold() -> f64 {
    0.25
}

fn default_confidence() -> f64 {
    0.55
}

/// Direction of a threshold comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Value below the level.
    Below,
    /// Value above the level.
    Above,
}

/// Risk limits and sizing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskSpec {
    /// Starting capital in account currency.
    pub capital: f64,
    /// How an entry is sized.
    pub sizing: Sizing,
    /// Smallest order notional accepted.
    pub min_order: f64,
    /// Most positions open (or pending entry) at once.
    pub max_positions: usize,
    /// Loss within one trading day, as a fraction of the day's starting equity, that stops new entries
    /// for the rest of that day. A value of 1 or more never triggers.
    pub daily_loss_stop: f64,
    /// Every filled entry gets a take-profit limit this fraction beyond its price (a bracket leg).
    pub take_profit: Option<f64>,
    /// Every filled entry gets a stop-loss this fraction against its price (a bracket leg).
    pub stop_loss: Option<f64>,
    /// Largest share of equity one entry may take, in every sizing mode (Kelly's `cap` too
    /// applies, whichever is smaller). The default 2 % is the seed's rule; a backtest that
    /// reproduces an all-in strategy sets 1.
    pub max_position: f64,
    /// Largest gross exposure — the sum of `|value at entry|` of open positions and pending
    /// entries — as a multiple of equity; an entry that would pass it is cut to the room left,
    /// or refused (`max_gross_exposure`) when less than the minimum order is left.
    pub max_gross_exposure: f64,
    /// Largest net exposure of one sector (the universe file's sectors, `unknown` for the
    /// rest) as a share of equity, measured like the exposure output; unset: no sector limit.
    pub max_sector_exposure: Option<f64>,
    /// What the daily loss stop does besides refusing entries: `block` (only that) or
    /// `flatten` (also closes every position at its next bar).
    pub on_daily_stop: StopAction,
    /// What the kill switch does besides cancelling working entries and exits: `halt` (only
    /// that; bracket legs keep protecting positions) or `flatten` (also closes every position).
    pub on_kill: StopAction,
}

/// What a stop does to the open positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopAction {
    /// New entries are refused; positions stay.
    #[default]
    #[serde(alias = "halt")]
    Block,
    /// Positions are also closed at their next bar.
    Flatten,
}

impl Default for RiskSpec {
    fn default() -> Self {
        RiskSpec {
            capital: 100_000.0,
            sizing: Sizing::default(),
            min_order: 100.0,
            max_positions: 50,
            daily_loss_stop: 0.02,
            take_profit: None,
            stop_loss: None,
            max_position: 0.02,
            max_gross_exposure: 1.0,
            max_sector_exposure: None,
            on_daily_stop: StopAction::Block,
            on_kill: StopAction::Block,
        }
    }
}

/// Position sizing.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Sizing {
    /// Fractional Kelly: `f* = (p·b − q)/b`, times `fraction`, capped at `cap` of equity.
    /// `p` is the model's confidence; `b` is the ticker's upside over downside semi-volatility over
    /// the last `window` returns.
    Kelly {
        /// Fraction of full Kelly.
        #[serde(default = "default_kelly_fraction")]
        fraction: f64,
        /// Largest share of equity for one position.
        #[serde(default = "default_kelly_cap")]
        cap: f64,
        /// Returns used to estimate `b`.
        #[serde(default = "default_kelly_window")]
        window: usize,
    },
    /// Every entry takes all available cash (backtesting.py's `buy()`). (An empty struct variant,
    /// so that unknown keys beside `kind` are refused like everywhere else.)
    AllIn {},
    /// Every entry takes a fixed fraction of equity.
    FixedFraction {
        /// Share of equity per entry.
        fraction: f64,
    },
}

impl Sizing {
    /// Returns behind Kelly's payoff estimate: the Kelly sizing's `window`; `None` for the
    /// others, which do not read it (it is then not estimated, and NaN).
    pub fn payoff_window(&self) -> Option<usize> {
        match self {
            Sizing::Kelly { window, .. } => Some(*window),
            _ => None,
        }
    }
}

impl Default for Sizing {
    fn default() -> Self {
        Sizing::Kelly {
            fraction: default_kelly_fraction(),
            cap: default_kelly_cap(),
            window: default_kelly_window(),
        }
    }
}

fn default_kelly_fraction() -> f64 {
    0.25
}
fn default_kelly_cap() -> f64 {
    0.02
}
fn default_kelly_window() -> usize {
    30
}

/// Where a run's orders go, and the fill model of the paper broker — the one backtests use,
/// whatever the kind, and the one a live run fails over to with `failover = "paper"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSpec {
    /// `paper` (simulated fills), `alpaca` or `ibkr` (a live run's orders go there).
    pub kind: BrokerKind,
    /// Slippage as a fraction of price, against market and stop executions.
    pub slippage: f64,
    /// Commission per fill: a rate on traded value, or `{ rate, per_share, minimum }`.
    pub commission: Commission,
    /// Trade whole shares only (false: fractional quantities, as Alpaca allows for market and
    /// day orders).
    pub whole_shares: bool,
    /// Entry order type: market, limit, stop or stop_limit.
    pub order_type: EntryType,
    /// A limit entry's distance better than the deciding close, a stop's beyond it, as a
    /// fraction.
    pub offset: f64,
    /// Time in force of entries and exits: day, gtc or ioc.
    pub time_in_force: TimeInForce,
    /// Most of a bar's volume one fill may take; the rest fills on later bars.
    pub volume_cap: Option<f64>,
    /// The venue's REST base URL (default per kind: Alpaca's paper host; the Client Portal
    /// gateway at `https://localhost:5000/v1/api`).
    pub base_url: Option<String>,
    /// Alpaca's trade-updates websocket URL (default: derived from `base_url`'s host).
    pub stream_url: Option<String>,
    /// Interactive Brokers' account id (`DU…` is a paper account).
    pub account: Option<String>,
    /// Trading with real money is allowed: without it a run refuses a live account or host.
    pub live: bool,
    /// What the run does while the venue is unreachable or its breaker is open: `halt` new
    /// entries (exits keep being retried) or route orders to the `paper` broker.
    pub failover: Failover,
    /// Minutes between reconciliations with the venue (one also runs at start).
    pub reconcile_minutes: f64,
}

/// Where a run's orders go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerKind {
    /// The paper broker's simulated fills.
    #[default]
    Paper,
    /// Alpaca's v2 API.
    Alpaca,
    /// Interactive Brokers' Client Portal Web API.
    Ibkr,
}

/// What a run does while its venue cannot take orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failover {
    /// New entries are halted; exits and cancels are retried.
    #[default]
    Halt,
    /// The run goes on as a paper run: every order not yet done at the venue, and every later
    /// one, is filled by the paper broker (recorded, audited and alerted; once per run).
    Paper,
}

impl Default for BrokerSpec {
    fn default() -> Self {
        BrokerSpec {
            kind: BrokerKind::Paper,
            slippage: default_slippage(),
            commission: Commission::default(),
            whole_shares: true,
            order_type: EntryType::Market,
            offset: 0.0,
            time_in_force: TimeInForce::Day,
            volume_cap: None,
            base_url: None,
            stream_url: None,
            account: None,
            live: false,
            failover: Failover::Halt,
            reconcile_minutes: 5.0,
        }
    }
}

fn default_slippage() -> f64 {
    0.0005
}

/// Where results go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSpec {
    /// Directory holding `<run-id>/` folders, relative to the working directory.
    pub dir: String,
    /// Write `report.html`.
    pub report: bool,
    /// What the report measures the strategy against: `"equal_weight"` (the universe, rebalanced
    /// at every close) or a ticker of the universe held from its first close.
    pub benchmark: String,
}

impl Default for OutputSpec {
    fn default() -> Self {
        OutputSpec {
            dir: "runs".into(),
            report: true,
            benchmark: EQUAL_WEIGHT.into(),
        }
    }
}

/// `[outputs] benchmark`'s name for the equal-weight universe.
pub const EQUAL_WEIGHT: &str = "equal_weight";

/// A pipeline file, loaded and validated, with the directory its relative paths start from.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The file it came from.
    pub path: PathBuf,
    /// Directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
    /// The file's text (what the run's fingerprint is taken from).
    pub text: String,
}

/// FNV-1a of a text, 16 hex digits: a stable checksum (the same in every build and version), for
/// migrations and pipeline fingerprints.
pub fn checksum(text: &str) -> String {
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

impl LoadedPipeline {
    /// What identifies the pipeline a run belongs to: its name and the checksum of its text.
    pub fn fingerprint(&self) -> String {
        format!("{}@{}", self.pipeline.name, checksum(&self.text))
    }

    /// Resolves a path written in the pipeline file.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// The directory a pipeline file's relative paths are resolved against: the repository root (the
/// file's folder's parent) when the file lives in a `pipelines` folder, else the file's folder.
/// Inputs (`[source] paths`, `universe`, fundamentals) and outputs (`[outputs] dir`) alike.
fn base_dir_of(path: &Path) -> PathBuf {
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|n| n == "pipelines") {
        dir.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        dir
    }
}

/// The commented pipeline `fdp init NAME` writes (it runs as written, on synthetic data).
pub fn template(name: &str) -> String {
    include_str!("template.toml").replace("{name}", name)
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Pipeline {
    /// Loads and validates a pipeline file.
    ///
    /// # Errors
    /// [`ConfigError::Io`] if the file cannot be read, [`ConfigError::Invalid`] with line and column
    /// for bad TOML, unknown keys, wrong types and failed validation.
    pub fn load(path: &Path) -> Result<LoadedPipeline, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let pipeline = Self::parse(&text, path)?;
        Ok(LoadedPipeline {
            pipeline,
            path: path.to_path_buf(),
            base_dir: base_dir_of(path),
            text,
        })
    }

    /// Loads a pipeline file with `--set key=value` overrides applied to its text before it is
    /// parsed (see [`overrides::apply`]); the loaded text is the resolved one.
    ///
    /// # Errors
    /// As [`Pipeline::load`]; a malformed override; a parse error then names the overrides.
    pub fn load_with(path: &Path, sets: &[String]) -> Result<LoadedPipeline, ConfigError> {
        if sets.is_empty() {
            return Self::load(path);
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let resolved = overrides::apply(&text, sets).map_err(|e| ConfigError::Override {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let pipeline = Self::parse(&resolved, path).map_err(|e| ConfigError::Override {
            path: path.to_path_buf(),
            message: format!("with --set {}: {e}", sets.join(" --set ")),
        })?;
        Ok(LoadedPipeline {
            pipeline,
            path: path.to_path_buf(),
            base_dir: base_dir_of(path),
            text: resolved,
        })
    }

    /// Parses and validates pipeline text; `path` only names the file in errors.
    ///
    /// # Errors
    /// As [`Pipeline::load`].
    pub fn parse(text: &str, path: &Path) -> Result<Pipeline, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let pipeline: Pipeline = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            let mut offset = e.span().map_or(0, |s| s.start);
            // Inside tagged tables toml points at the table; point at the unknown key instead.
            if let Some(key) = message
                .strip_prefix("unknown field `")
                .and_then(|r| r.split('`').next())
            {
                offset = key_after(text, offset, key);
            }
            invalid(offset, message)
        })?;
        pipeline
            .validate(text)
            .map_err(|(offset, message)| invalid(offset, message))?;
        Ok(pipeline)
    }

    /// The drift operator's settings: the `[drift]` section, or for an ensemble without one the
    /// operator its `drift_window`, `drift_threshold` and `min_samples` (as the reference) imply;
    /// none for a rule model without the section.
    pub fn drift(&self) -> Option<DriftSpec> {
        match (&self.drift, &self.model) {
            (Some(d), _) => Some(d.clone()),
            (None, ModelSpec::Ml(m)) => Some(DriftSpec {
                features: Vec::new(),
                window: m.drift_window,
                reference: m.min_samples,
                threshold: m.drift_threshold,
                ..DriftSpec::default()
            }),
            (None, _) => None,
        }
    }

    /// Names of all feature output columns, in declaration order.
    pub fn feature_columns(&self) -> Vec<String> {
        self.features
            .iter()
            .flat_map(|f| f.get_ref().output_names())
            .chain(self.fundamentals.columns().names())
            .collect()
    }

    /// Checks what the types cannot; the error carries a byte offset into `text`.
    fn validate(&self, text: &str) -> Result<(), (usize, String)> {
        // The name starts run ids (folders, keys) and names the model registry's folder.
        crate::names::check_name("pipeline name", &self.name).map_err(|e| {
            let at = text.find(&format!("\"{}\"", self.name)).unwrap_or(0);
            (at, e.to_string())
        })?;
        for f in &self.features {
            f.get_ref().validate().map_err(|m| {
                let key = m.split_whitespace().next().unwrap_or_default();
                (key_after(text, f.span().start, key), m)
            })?;
        }
        if let Some(a) = &self.alerts {
            a.get_ref().check().map_err(|m| (a.span().start, m))?;
        }
        let fu = &self.fundamentals;
        let fu_at = locate(text, "[fundamentals]", "");
        if let Some(bad) = fu
            .finnhub
            .iter()
            .find(|f| !FINNHUB_FIELDS.contains(&f.as_str()))
        {
            return Err((
                locate(text, "[fundamentals]", bad),
                format!(
                    "unknown Finnhub field `{bad}` (known: {})",
                    FINNHUB_FIELDS.join(", ")
                ),
            ));
        }
        if !fu.fmp.is_empty() && fu.fmp_dir.is_none() {
            return Err((fu_at, "fundamentals.fmp needs fundamentals.fmp_dir".into()));
        }
        if !fu.finnhub.is_empty() && fu.finnhub_dir.is_none() {
            return Err((
                fu_at,
                "fundamentals.finnhub needs fundamentals.finnhub_dir".into(),
            ));
        }
        for p in &fu.providers {
            check_entry(text, "[fundamentals]", p, false)?;
        }
        let periods = ["annual", "quarter", "FY", "Q1", "Q2", "Q3", "Q4"];
        if let Some(period) = &fu.fmp_period
            && !periods.contains(&period.as_str())
        {
            return Err((
                locate(text, "[fundamentals]", period),
                format!(
                    "fundamentals.fmp_period `{period}`: one of {}",
                    periods.join(", ")
                ),
            ));
        }
        let columns = self.feature_columns();
        let check = |name: &str| {
            if columns.iter().any(|c| c == name) {
                Ok(())
            } else {
                Err((
                    locate(text, "[model]", name),
                    format!(
                        "model input `{name}` is not a declared feature output (declared: {})",
                        columns.join(", ")
                    ),
                ))
            }
        };
        let model_at = locate(text, "[model]", "");
        match &self.model {
            ModelSpec::Crossover {
                fast,
                slow,
                confidence,
                ..
            } => {
                check(fast)?;
                check(slow)?;
                check_probability(*confidence, model_at)?;
            }
            ModelSpec::Threshold {
                feature,
                confidence,
                ..
            } => {
                check(feature)?;
                check_probability(*confidence, model_at)?;
            }
            ModelSpec::Ml(m) => {
                for i in &m.inputs {
                    check(i)?;
                }
                check_probability(m.enter, model_at)?;
                check_probability(m.exit, model_at)?;
                if m.exit > m.enter {
                    return Err((model_at, "model: exit must not be above enter".into()));
                }
                if m.horizon == 0 || m.retrain_every == 0 || m.trees == 0 || m.drift_window == 0 {
                    return Err((
                        model_at,
                        "model: horizon, retrain_every, trees and drift_window must be positive"
                            .into(),
                    ));
                }
                let inputs = if m.inputs.is_empty() {
                    columns.len()
                } else {
                    m.inputs.len()
                };
                if m.select > inputs {
                    return Err((
                        model_at,
                        format!("model: select = {} but there are fewer inputs", m.select),
                    ));
                }
                if m.ttl_days == 0 {
                    return Err((model_at, "model: ttl_days must be positive".into()));
                }
                if m.min_samples < 40 {
                    return Err((model_at, "model: min_samples must be at least 40".into()));
                }
                // Bounds that keep a run's memory and time finite (each is a window of rows or
                // a count of models held per ticker).
                for (name, v, max) in [
                    ("horizon", m.horizon, 10_000),
                    ("retrain_every", m.retrain_every, 1_000_000),
                    ("min_samples", m.min_samples, 1_000_000),
                    ("trees", m.trees, 10_000),
                    ("drift_window", m.drift_window, 100_000),
                ] {
                    if v > max {
                        return Err((
                            model_at,
                            format!("model: {name} must be at most {max}, got {v}"),
                        ));
                    }
                }
            }
        }
        if let Some(d) = &self.drift {
            let drift_at = locate(text, "[drift]", "");
            d.validate().map_err(|m| {
                let key = m.split_whitespace().next().unwrap_or_default();
                (key_after(text, drift_at, key), format!("drift: {m}"))
            })?;
            if let Some(bad) = d.features.iter().find(|f| !columns.contains(f)) {
                return Err((
                    locate(text, "[drift]", bad),
                    format!(
                        "drift feature `{bad}` is not a declared feature output (declared: {})",
                        columns.join(", ")
                    ),
                ));
            }
        }
        if let SourceSpec::Files {
            start, end, paths, ..
        } = &self.source
        {
            if paths.is_empty() {
                return Err((locate(text, "[source]", ""), "source.paths is empty".into()));
            }
            check_range(text, start.as_ref(), end.as_ref())?;
        }
        if let SourceSpec::Synthetic { start, .. } = &self.source {
            check_range(text, start.as_ref(), None)?;
        }
        if let SourceSpec::Providers {
            providers,
            tickers,
            interval,
            start,
            end,
            daily_spend,
            ..
        } = &self.source
        {
            let at = locate(text, "[source]", "");
            if providers.is_empty() {
                return Err((at, "source.providers is empty".into()));
            }
            for p in providers {
                check_entry(text, "[source]", p, true)?;
            }
            if let Some(s) = daily_spend
                && !(s.is_finite() && *s > 0.0)
            {
                return Err((
                    locate(text, "[source]", "daily_spend"),
                    format!("source.daily_spend must be a number > 0, not {s}"),
                ));
            }
            if tickers.is_empty() {
                return Err((at, "source.tickers is empty".into()));
            }
            if let Some((bad, e)) = tickers
                .iter()
                .find_map(|t| crate::names::check_ticker(t).err().map(|e| (t, e)))
            {
                return Err((locate(text, "[source]", bad), e.to_string()));
            }
            if let Err(e) = provider::Interval::parse(interval) {
                return Err((locate(text, "[source]", interval), e));
            }
            check_range(text, Some(start), Some(end))?;
        }
        if let SourceSpec::Redis {
            tickers,
            start,
            end,
            ..
        } = &self.source
        {
            if tickers.is_empty() {
                return Err((
                    locate(text, "[source]", ""),
                    "source.tickers is empty".into(),
                ));
            }
            if let Some(bad) = tickers
                .iter()
                .find_map(|t| crate::names::check_ticker(t).err().map(|e| (t, e)))
            {
                let (bad, e) = bad;
                return Err((locate(text, "[source]", bad), e.to_string()));
            }
            check_range(text, start.as_ref(), end.as_ref())?;
        }
        let r = &self.risk;
        let risk_at = locate(text, "[risk", "");
        let bad = |m: &str| Err((risk_at, format!("risk: {m}")));
        if !(r.capital.is_finite() && r.capital > 0.0) {
            return bad("capital must be positive");
        }
        if !(r.min_order.is_finite() && r.min_order >= 0.0) {
            return bad("min_order must be zero or more");
        }
        if !(r.daily_loss_stop.is_finite() && r.daily_loss_stop > 0.0) {
            return bad("daily_loss_stop must be positive");
        }
        if !(r.max_position > 0.0 && r.max_position <= 1.0) {
            return Err((
                locate(text, "[risk", "max_position"),
                "risk: max_position must be in (0, 1]".into(),
            ));
        }
        if !(r.max_gross_exposure.is_finite() && r.max_gross_exposure > 0.0) {
            return Err((
                locate(text, "[risk", "max_gross_exposure"),
                "risk: max_gross_exposure must be positive".into(),
            ));
        }
        if let Some(v) = r.max_sector_exposure
            && !(v.is_finite() && v > 0.0)
        {
            return Err((
                locate(text, "[risk", "max_sector_exposure"),
                "risk: max_sector_exposure must be positive".into(),
            ));
        }
        match r.sizing {
            Sizing::Kelly {
                fraction,
                cap,
                window,
            } if !(fraction > 0.0
                && fraction <= 1.0
                && cap > 0.0
                && cap <= 1.0
                && (2..=100_000).contains(&window)) =>
            {
                return bad("kelly needs 0 < fraction <= 1, 0 < cap <= 1, 2 <= window <= 100000");
            }
            Sizing::FixedFraction { fraction } if !(fraction > 0.0 && fraction <= 1.0) => {
                return bad("fixed_fraction needs 0 < fraction <= 1");
            }
            _ => {}
        }
        for (name, v) in [("take_profit", r.take_profit), ("stop_loss", r.stop_loss)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0 && v < 1.0)
            {
                return Err((
                    locate(text, "[risk", name),
                    format!("risk: {name} must be in (0, 1)"),
                ));
            }
        }
        let BrokerSpec {
            slippage,
            commission,
            order_type,
            offset,
            volume_cap,
            reconcile_minutes,
            ..
        } = self.broker;
        let fraction_ok = |x: f64| x.is_finite() && (0.0..0.5).contains(&x);
        let broker_bad =
            |key: &str, m: &str| Err((locate(text, "[broker]", key), format!("broker: {m}")));
        if !(fraction_ok(slippage) && fraction_ok(commission.rate)) {
            return broker_bad("", "slippage and commission must be in [0, 0.5)");
        }
        if !(commission.per_share.is_finite()
            && commission.per_share >= 0.0
            && commission.minimum.is_finite()
            && commission.minimum >= 0.0)
        {
            return broker_bad(
                "commission",
                "commission per_share and minimum must be zero or more",
            );
        }
        if !fraction_ok(offset) || (order_type == EntryType::Market && offset != 0.0) {
            return broker_bad(
                "offset",
                "offset must be in [0, 0.5), and 0 for market entries",
            );
        }
        if let Some(c) = volume_cap
            && !(c.is_finite() && c > 0.0 && c <= 1.0)
        {
            return broker_bad("volume_cap", "volume_cap must be in (0, 1]");
        }
        if !(reconcile_minutes.is_finite() && reconcile_minutes > 0.0) {
            return broker_bad("reconcile_minutes", "reconcile_minutes must be positive");
        }
        if self.broker.kind == BrokerKind::Ibkr && self.broker.account.is_none() {
            return broker_bad("kind", "kind = \"ibkr\" needs account (the DU… or U… id)");
        }
        if self.quality.max_jump.is_nan() || self.quality.max_jump <= 1.0 {
            return Err((
                locate(text, "[quality]", "max_jump"),
                "quality.max_jump must be more than 1 (inf turns the check off)".into(),
            ));
        }
        if !(self.quality.max_move.is_finite() && self.quality.max_move > 0.0) {
            return Err((
                locate(text, "[quality]", "max_move"),
                "quality.max_move must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Byte offset of `key` written at the start of a line at or after `from`; `from` when not found.
fn key_after(text: &str, from: usize, key: &str) -> usize {
    let from = from.min(text.len());
    let mut at = from;
    for line in text[from..].split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed
            .strip_prefix(key)
            .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return at + (line.len() - trimmed.len());
        }
        at += line.len();
    }
    from
}

/// One provider entry under `header`: a known provider that gives what the list is for (bars
/// under `[source]`; under `[fundamentals]` FMP or Finnhub), a tier, a cost and symbols that
/// pass the provider-symbol rule.
fn check_entry(
    text: &str,
    header: &str,
    p: &ProviderEntry,
    bars: bool,
) -> Result<(), (usize, String)> {
    let at = |v: &str| locate(text, header, v);
    let Some(kind) = provider::ProviderKind::parse(&p.name) else {
        return Err((
            at(&p.name),
            format!(
                "unknown provider `{}` (known: {})",
                p.name,
                provider::ProviderKind::NAMES.join(", ")
            ),
        ));
    };
    if bars && !kind.gives_bars() {
        return Err((
            at(&p.name),
            format!(
                "`{}` gives fundamentals, not bars: list it under [fundamentals] providers",
                p.name
            ),
        ));
    }
    if !bars
        && !matches!(
            kind,
            provider::ProviderKind::Fmp | provider::ProviderKind::Finnhub
        )
    {
        return Err((
            at(&p.name),
            format!("`{}` gives no fundamentals (fmp or finnhub here)", p.name),
        ));
    }
    if p.tier != "free" && p.tier != "premium" {
        return Err((at(&p.tier), format!("tier `{}`: free or premium", p.tier)));
    }
    if !(p.cost_per_request.is_finite() && p.cost_per_request >= 0.0) {
        return Err((
            at("cost_per_request"),
            format!(
                "{}: cost_per_request must be a number ≥ 0, not {}",
                p.name, p.cost_per_request
            ),
        ));
    }
    if let Some((bad, e)) = p
        .symbols
        .values()
        .find_map(|s| crate::names::check_provider_symbol(s).err().map(|e| (s, e)))
    {
        return Err((at(bad), format!("{}: symbol {bad:?}: {e}", p.name)));
    }
    Ok(())
}

/// `[source] start` and `end`: each a date (or a time [`crate::time::parse_time`] reads), and
/// `start` not after `end` (an empty range would run over zero bars).
fn check_range(
    text: &str,
    start: Option<&TimeText>,
    end: Option<&TimeText>,
) -> Result<(), (usize, String)> {
    for d in [start, end].into_iter().flatten() {
        if d.at().is_none() {
            return Err((
                locate(text, "[source]", d.as_str()),
                format!("`{}` is not a date (YYYY-MM-DD)", d.as_str()),
            ));
        }
    }
    if let (Some(s), Some(e)) = (start, end)
        && e.at() < s.at()
    {
        return Err((
            locate(text, "[source]", e.as_str()),
            format!(
                "source.end `{}` is before source.start `{}`: the range holds no bar",
                e.as_str(),
                s.as_str()
            ),
        ));
    }
    Ok(())
}

/// Byte offset of the quoted value `"value"` (or, when `value` is empty, of the header itself) in the
/// section that starts with `header`; 0 when not found. Values inside tagged tables carry no span
/// through serde, so validation finds them in the text.
fn locate(text: &str, header: &str, value: &str) -> usize {
    let Some(start) = text.find(header) else {
        return 0;
    };
    if value.is_empty() {
        return start;
    }
    let quoted = [
        format!("\"{value}\""),
        format!("'{value}'"),
        value.to_string(),
    ];
    quoted
        .iter()
        .find_map(|q| text[start..].find(q.as_str()))
        .map_or(start, |i| start + i)
}

fn check_probability(p: f64, at: usize) -> Result<(), (usize, String)> {
    if p.is_finite() && p > 0.0 && p < 1.0 {
        Ok(())
    } else {
        Err((at, format!("model confidence {p} must be in (0, 1)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "t"
[source]
kind = "synthetic"
tickers = 3
bars = 10

[[features]]
kind = "sma"
period = 10

[[features]]
kind = "sma"
period = 30

[model]
kind = "crossover"
fast = "SMA_10"
slow = "SMA_30"
"#;

    #[test]
    fn a_good_file_parses() {
        let p = Pipeline::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(p.feature_columns(), vec!["SMA_10", "SMA_30"]);
        assert!(matches!(p.risk.sizing, Sizing::Kelly { .. }));
    }

    #[test]
    fn an_unknown_key_names_line_and_column() {
        let text = GOOD.replace("bars = 10", "bars = 10\nbras = 3");
        let e = Pipeline::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:7:1:"), "{e}");
        assert!(e.contains("bras"), "{e}");
    }

    #[test]
    fn a_model_input_must_be_declared() {
        let text = GOOD.replace("slow = \"SMA_30\"", "slow = \"SMA_31\"");
        let e = Pipeline::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:19:8:"), "{e}");
        assert!(e.contains("SMA_31"), "{e}");
    }

    #[test]
    fn a_bad_period_is_refused_where_it_is_declared() {
        let text = GOOD.replace("period = 30", "period = 0");
        let e = Pipeline::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:14:1:"), "{e}");
    }

    #[test]
    fn source_times_are_parsed_once_with_the_file_and_a_bad_one_is_refused_at_its_line() {
        let text = GOOD.replace(
            "bars = 10",
            "bars = 10\nstart = \"2020-01-02T09:30:00-05:00\"",
        );
        let p = Pipeline::parse(&text, Path::new("t.toml")).unwrap();
        let SourceSpec::Synthetic {
            start: Some(start), ..
        } = &p.source
        else {
            panic!("a synthetic source with a start");
        };
        assert_eq!(start.at(), Some(1_577_975_400), "14:30 UTC");
        assert_eq!(start.as_str(), "2020-01-02T09:30:00-05:00");
        // A synthetic start that names no time used to fall back to 2000-01-03 in silence.
        let text = GOOD.replace("bars = 10", "bars = 10\nstart = \"2020-13-45\"");
        let e = Pipeline::parse(&text, Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:7:"), "{e}");
        assert!(e.contains("`2020-13-45` is not a date"), "{e}");
    }
}
