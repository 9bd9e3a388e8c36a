//! A Redis bar store: one sorted set per ticker, `<prefix>:bars:<TICKER>`, scored by event time
//! (epoch seconds), members `ts,open,high,low,close,volume`. The streaming run's work items load
//! a ticker's bars of a cycle from it with one ZRANGEBYSCORE; a backtest can replay it too.

use crate::bar::{Bar, BarBatch, Tickers};
use crate::config::LoadedPipeline;
use crate::reject::{Action, Reason, Reject};
use crate::sources::redis_stream::Conn;
use crate::sources::{SourceError, WorkerInput};
use crate::time::{EventTime, TimeText};

const DAY: EventTime = 86_400;

/// A resolved bar store.
#[derive(Debug, Clone)]
pub struct RedisBars {
    url: String,
    prefix: String,
    tickers: Vec<String>,
    start: Option<EventTime>,
    end: Option<EventTime>,
}

/// The sorted-set key of a ticker's bars.
pub fn key(prefix: &str, ticker: &str) -> String {
    format!("{prefix}:bars:{ticker}")
}

/// The member that stores `b`.
pub fn member(b: &Bar) -> String {
    format!(
        "{},{},{},{},{},{}",
        b.ts, b.open, b.high, b.low, b.close, b.volume
    )
}

/// Writes bars into the store (an existing member is left as it is).
///
/// # Errors
/// Redis errors.
pub fn store(r: &mut Conn, prefix: &str, ticker: &str, bars: &BarBatch) -> Result<(), SourceError> {
    for chunk in (0..bars.len()).collect::<Vec<_>>().chunks(1000) {
        let mut c = redis::cmd("ZADD");
        c.arg(key(prefix, ticker));
        for &i in chunk {
            let b = bars.get(i);
            c.arg(b.ts).arg(member(&b));
        }
        r.query::<i64>(&c).map_err(|e| redis_error(prefix, &e))?;
    }
    Ok(())
}

fn redis_error(what: &str, e: &dyn std::fmt::Display) -> SourceError {
    SourceError::Format {
        path: format!("redis bar store {what}").into(),
        message: e.to_string(),
    }
}

impl RedisBars {
    /// Resolves the pipeline's `kind = "redis"` source.
    ///
    /// # Errors
    /// The source is not a Redis one, or lists no ticker.
    pub fn open(p: &LoadedPipeline) -> Result<RedisBars, SourceError> {
        let crate::config::SourceSpec::Redis {
            url,
            prefix,
            tickers,
            start,
            end,
        } = &p.pipeline.source
        else {
            return Err(SourceError::Empty {
                selection: "not a redis source".into(),
            });
        };
        if tickers.is_empty() {
            return Err(SourceError::Empty {
                selection: format!("redis {prefix}:bars:*"),
            });
        }
        Ok(RedisBars {
            url: url.clone().unwrap_or_else(|| {
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
            }),
            prefix: prefix.clone(),
            tickers: tickers.clone(),
            start: start.as_ref().and_then(TimeText::at),
            end: end.as_ref().and_then(TimeText::at).map(|e| e + DAY),
        })
    }

    /// The run's ticker table.
    pub fn tickers(&self) -> Tickers {
        Tickers::new(self.tickers.iter().cloned())
    }

    /// Loads one ticker's bars in time order; members that do not parse become rejects naming
    /// their key and member.
    ///
    /// # Errors
    /// Redis unreachable.
    pub fn load_ticker(
        &self,
        ticker: &str,
        tickers: &Tickers,
    ) -> Result<(BarBatch, Vec<Reject>), SourceError> {
        let mut bars = BarBatch::default();
        let mut rejects = Vec::new();
        let Some(id) = tickers.id(ticker) else {
            return Ok((bars, rejects));
        };
        let k = key(&self.prefix, ticker);
        let mut r = Conn::open(&self.url).map_err(|e| redis_error(&k, &e))?;
        let lo = self.start.map_or("-inf".to_string(), |s| s.to_string());
        let hi = self.end.map_or("+inf".to_string(), |e| format!("({e}"));
        let members: Vec<String> = r
            .query(redis::cmd("ZRANGEBYSCORE").arg(&k).arg(lo).arg(hi))
            .map_err(|e| redis_error(&k, &e))?;
        for m in members {
            let f: Vec<&str> = m.split(',').collect();
            let num = |i: usize| f.get(i).and_then(|s| s.trim().parse::<f64>().ok());
            let ts = f.first().and_then(|s| s.trim().parse::<EventTime>().ok());
            match (ts, num(1), num(2), num(3), num(4), num(5)) {
                (Some(ts), Some(open), Some(high), Some(low), Some(close), Some(volume))
                    if f.len() == 6 =>
                {
                    bars.push(Bar {
                        ticker: id,
                        ts,
                        open,
                        high,
                        low,
                        close,
                        volume,
                    });
                }
                _ => rejects.push(Reject {
                    ticker: ticker.to_string(),
                    ts,
                    reason: Reason::Unparseable,
                    action: Action::Rejected,
                    detail: format!("{k} member {m:?}: want ts,open,high,low,close,volume"),
                    origin: format!("{k} member {m:?}"),
                }),
            }
        }
        Ok((bars, rejects))
    }

    /// Loads the tickers worker `index` of `peers` owns.
    ///
    /// # Errors
    /// Redis unreachable.
    pub fn load(
        &self,
        index: usize,
        peers: usize,
        tickers: &Tickers,
    ) -> Result<WorkerInput, SourceError> {
        crate::sources::load_owned(index, peers, tickers, |name| {
            self.load_ticker(name, tickers)
        })
    }
}
