//! Fundamentals (FMP ratios, key metrics, income statements) and news sentiment (Finnhub) fetched
//! through the same controls as bars — the pipeline's breakers, limiters, budgets and in-flight
//! cap in Redis, so a Finnhub key shared by candles and sentiment is paced as one — for `fdp
//! fetch` to keep in the recorded layout that `sources::fundamentals` joins.
//!
//! The providers are `[fundamentals] providers` (default: FMP on its free tier when FMP fields
//! are asked for, Finnhub on premium — sentiment has no free tier — when sentiment fields are).
//! The controls' settings (Redis, prefix, timeouts, breaker, spend) are the providers source's
//! when the pipeline has one, else their defaults with `[fundamentals] redis_url` and `prefix`.

use std::time::Duration;

use crate::config::{LoadedPipeline, ProviderEntry, SourceSpec};
use crate::sources::SourceError;
use crate::sources::redis_stream::StreamError;

use super::controls::{Controls, Link, Session};
use super::finnhub::{self, Snapshot};
use super::fmp::{self, Statement, StatementRequest, Statements};
use super::source::ProviderSource;

/// What a pipeline's `[fundamentals]` asks to fetch, and through which controls.
#[derive(Debug, Clone)]
pub struct FundamentalsFetch {
    controls: Controls,
    fmp: Option<Link>,
    finnhub: Option<Link>,
    period: String,
    limit: Option<u32>,
    fields: Vec<String>,
}

/// One ticker's statements, each with what was kept and quarantined.
pub type TickerStatements = Vec<(Statement, Statements)>;

impl FundamentalsFetch {
    /// The fetch the pipeline's `[fundamentals]` implies; `None` when it asks for no FMP or
    /// Finnhub field.
    ///
    /// # Errors
    /// The pipeline's providers source does not open.
    pub fn open(p: &LoadedPipeline) -> Result<Option<FundamentalsFetch>, SourceError> {
        let spec = &p.pipeline.fundamentals;
        if spec.fmp.is_empty() && spec.finnhub.is_empty() {
            return Ok(None);
        }
        let controls = match &p.pipeline.source {
            SourceSpec::Providers { .. } => ProviderSource::open(p)?.controls().clone(),
            // The providers source's defaults.
            _ => {
                use crate::config as c;
                let prefix = spec.prefix.clone().unwrap_or_else(c::default_prefix);
                Controls::new(
                    &prefix,
                    spec.redis_url.as_deref(),
                    Duration::from_secs(c::default_provider_timeout()),
                    (
                        c::default_breaker_failures(),
                        Duration::from_secs(c::default_breaker_cooldown()),
                    ),
                    None,
                    c::default_in_flight(),
                )
            }
        };
        let entry = |name: &str, tier: &str| {
            spec.providers
                .iter()
                .find(|e| e.name == name)
                .cloned()
                .unwrap_or_else(|| ProviderEntry::named(name, tier))
        };
        let link = |kind: super::ProviderKind, tier| controls.link(kind, &entry(kind.name(), tier));
        Ok(Some(FundamentalsFetch {
            fmp: (!spec.fmp.is_empty()).then(|| link(super::ProviderKind::Fmp, "free")),
            finnhub: (!spec.finnhub.is_empty())
                .then(|| link(super::ProviderKind::Finnhub, "premium")),
            period: spec.fmp_period.clone().unwrap_or_else(|| "annual".into()),
            limit: spec.fmp_limit,
            // EPS growth is derived from `eps`, which must then be a number too.
            fields: spec
                .fmp
                .iter()
                .map(|f| if f == "epsGrowth" { "eps" } else { f.as_str() })
                .map(str::to_string)
                .collect(),
            controls,
        }))
    }

    /// Whether FMP statements are fetched.
    pub fn wants_statements(&self) -> bool {
        self.fmp.is_some()
    }

    /// Whether Finnhub sentiment is fetched.
    pub fn wants_sentiment(&self) -> bool {
        self.finnhub.is_some()
    }

    /// Opens what the requests share.
    ///
    /// # Errors
    /// The runtime or TLS cannot start, or Redis is unreachable; the words say which.
    pub fn session(&self) -> Result<Session, String> {
        self.controls.session()
    }

    /// `ticker`'s income statements, ratios and key metrics from FMP (empty when no FMP field
    /// is asked for); `Ok(Err(reason))` when FMP was passed over or failed on one of them.
    ///
    /// # Errors
    /// Redis failed.
    pub fn statements(
        &self,
        session: &mut Session,
        ticker: &str,
    ) -> Result<Result<TickerStatements, String>, StreamError> {
        let Some(link) = &self.fmp else {
            return Ok(Ok(Vec::new()));
        };
        let mut out = Vec::new();
        for statement in Statement::ALL {
            let req = StatementRequest {
                ticker: ticker.to_string(),
                symbol: link.symbol(ticker),
                statement,
                period: self.period.clone(),
                limit: self.limit,
                fields: self.fields.clone(),
            };
            let cfg = &link.config;
            let what = format!("{ticker} {}", statement.endpoint());
            let got = self.controls.ask(session, link, &what, |http| async move {
                fmp::fetch(&http, cfg, &req).await
            })?;
            match got {
                Ok(s) => out.push((statement, s)),
                Err(reason) => return Ok(Err(reason)),
            }
        }
        Ok(Ok(out))
    }

    /// `ticker`'s news-sentiment snapshot from Finnhub, as of now (`None` when no sentiment
    /// field is asked for); `Ok(Err(reason))` when Finnhub was passed over or failed.
    ///
    /// # Errors
    /// Redis failed.
    pub fn sentiment(
        &self,
        session: &mut Session,
        ticker: &str,
    ) -> Result<Result<Option<Snapshot>, String>, StreamError> {
        let Some(link) = &self.finnhub else {
            return Ok(Ok(None));
        };
        let symbol = link.symbol(ticker);
        let cfg = &link.config;
        let what = format!("{ticker} news-sentiment");
        let got = self.controls.ask(session, link, &what, |http| async move {
            finnhub::sentiment(&http, cfg, ticker, &symbol).await
        })?;
        Ok(got.map(Some))
    }
}
