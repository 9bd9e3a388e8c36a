//! Redis Streams: the work queue and the live bar feed.
//!
//! Keys, under a prefix (`fdp` by default, a unique one per test):
//!
//! | key | what |
//! |---|---|
//! | `{p}:ticker_stream` | work items and pushed bars (group `fdp_workers`) |
//! | `{p}:dead_letter` | messages that failed for good, with their error |
//! | `{p}:floor` | sorted set: the event time every message still to come is at or after |
//! | `{p}:committed:{run}` | the event time through which `run`'s effects are in PostgreSQL |
//! | `{p}:cycle`, `{p}:until`, `{p}:cycle:{c}:done` | orchestrator cycles and their completion |
//! | `{p}:failures` | failure count per message id |
//! | `{p}:readers` | hash: each consumer's stream-reading connection id, to wake it ([`super::wake`]) |
//!
//! Message shapes (fields of a stream entry):
//! - a bar: `ticker, ts, open, high, low, close, volume` (`kind=bar` optional); `ts` in epoch
//!   seconds, `YYYY-MM-DD` or RFC 3339;
//! - a work item: `kind=ticker, ticker, cycle, of, floor, until` (written by `fdp orchestrate`);
//! - a watermark: `kind=watermark, ts`: every later message carries a time at or after `ts`.
//!
//! The connection wrapper reconnects with backoff when Redis goes away, so a restarted server
//! costs a pause, not the run.

use std::time::Duration;

use redis::Value;

use crate::time::EventTime;

/// The consumer group every worker joins.
pub const GROUP: &str = "fdp_workers";

/// Errors of the Redis side.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Redis refused a command or could not be reached within the retry budget.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A reply of an unexpected shape.
    #[error("redis reply: {what}")]
    Reply {
        /// The reply, or what was missing from it.
        what: String,
    },
    /// The stream reader's own connection failed, or the server refused its read.
    #[error(transparent)]
    Read(#[from] super::resp::RespError),
}

impl crate::fault::Blame for StreamError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            StreamError::Redis(e) if e.kind() == redis::ErrorKind::InvalidClientConfig => {
                Fault::Input
            }
            StreamError::Read(super::resp::RespError::Unsupported { .. }) => Fault::Input,
            StreamError::Redis(_) | StreamError::Reply { .. } | StreamError::Read(_) => {
                Fault::Service
            }
        }
    }
}

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    /// The prefix (`fdp`).
    pub prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }
    /// The work stream.
    pub fn stream(&self) -> String {
        format!("{}:ticker_stream", self.prefix)
    }
    /// The dead-letter stream.
    pub fn dead_letter(&self) -> String {
        format!("{}:dead_letter", self.prefix)
    }
    /// The floor sorted set.
    pub fn floor(&self) -> String {
        format!("{}:floor", self.prefix)
    }
    /// The committed watermark of a run.
    pub fn committed(&self, run: &str) -> String {
        format!("{}:committed:{run}", self.prefix)
    }
    /// The cycle counter.
    pub fn cycle(&self) -> String {
        format!("{}:cycle", self.prefix)
    }
    /// The last cycle's cut-off time.
    pub fn until(&self) -> String {
        format!("{}:until", self.prefix)
    }
    /// The set of tickers done in cycle `c`.
    pub fn cycle_done(&self, c: u64) -> String {
        format!("{}:cycle:{c}:done", self.prefix)
    }
    /// Failure counts per message id.
    pub fn failures(&self) -> String {
        format!("{}:failures", self.prefix)
    }
    /// The stream readers' connection ids by consumer, for waking ([`super::wake`]).
    pub fn readers(&self) -> String {
        format!("{}:readers", self.prefix)
    }
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// A bar pushed by a feed.
    Bar {
        /// Ticker as given.
        ticker: String,
        /// Event time.
        ts: EventTime,
        /// Open.
        open: f64,
        /// High.
        high: f64,
        /// Low.
        low: f64,
        /// Close.
        close: f64,
        /// Volume.
        volume: f64,
    },
    /// Load the ticker's new bars, up to `until`.
    Ticker {
        /// Ticker.
        ticker: String,
        /// Orchestrator cycle.
        cycle: u64,
        /// Number of items in the cycle.
        of: u64,
        /// Every bar of this cycle is at or after this time.
        floor: EventTime,
        /// Cut-off of the cycle (inclusive).
        until: EventTime,
    },
    /// Every later message is at or after `ts`.
    Watermark {
        /// The time.
        ts: EventTime,
    },
}

impl Work {
    /// Checks the message's times against its producer's clock — the entry id's time, Redis's
    /// clock when it took the `XADD` — before the message may move the stream's floor: a bar or
    /// watermark more than `max_ahead` seconds past that clock, a cycle cut off beyond it, or a
    /// cycle whose floor is past its cut-off would raise the floor for every consumer and every
    /// later run on the prefix, so such a message is refused (and dead-lettered).
    ///
    /// # Errors
    /// What is wrong, with the times.
    pub fn check_times(&self, added_ms: Option<u64>, max_ahead: i64) -> Result<(), String> {
        let Some(clock) = added_ms.map(|ms| (ms / 1000) as i64) else {
            return Err("the entry id carries no time (use XADD with `*`)".into());
        };
        let limit = clock.saturating_add(max_ahead);
        let ahead = |what: &str, t: EventTime| {
            Err(format!(
                "{what} {t} ({}) is {} s past its producer's clock ({}), more than the {max_ahead} s allowed",
                crate::time::format_time(t),
                t.saturating_sub(clock),
                crate::time::format_time(clock)
            ))
        };
        match *self {
            Work::Bar { ts, .. } if ts > limit => ahead("bar time", ts),
            Work::Watermark { ts } if ts > limit => ahead("watermark", ts),
            Work::Ticker { until, .. } if until > limit => ahead("cycle cut-off", until),
            Work::Ticker { floor, until, .. } if floor > until.saturating_add(1) => {
                Err(format!("cycle floor {floor} is past its cut-off {until}"))
            }
            _ => Ok(()),
        }
    }
}

pub use super::entry::{Entry, Fields};

/// The most of a message's text that the dead-letter stream and the audit log keep.
pub const KEPT_BYTES: usize = 4096;

/// A message's text as the dead-letter stream and the audit log keep it: whole up to
/// [`KEPT_BYTES`], else its first [`KEPT_BYTES`] (at a character boundary) followed by
/// `… [N bytes, fnv1a64 H]` — enough to see what it was and to match it with its source, without
/// storing a hostile 1 MB message twice.
pub fn bounded(text: &str) -> String {
    if text.len() <= KEPT_BYTES {
        return text.to_string();
    }
    let mut end = KEPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… [{} bytes, fnv1a64 {}]",
        &text[..end],
        text.len(),
        crate::config::checksum(text)
    )
}

/// Parses a time field: epoch seconds, or any text [`crate::time::parse_time`] reads (a date,
/// RFC 3339, a time with a UTC offset).
pub fn parse_ts(s: &str) -> Option<EventTime> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return Some(n);
    }
    crate::time::parse_time(s)
}

/// Decodes a message; the error names the field and what is wrong with it.
///
/// # Errors
/// Missing fields, values of the wrong type, an unknown kind, an invalid ticker, or an entry that
/// was trimmed from the stream.
pub fn decode(e: &Entry) -> Result<Work, String> {
    if e.fields.is_none() {
        return Err("entry was trimmed from the stream before it was processed".into());
    }
    let get = |k: &str| e.field(k).ok_or_else(|| format!("missing field `{k}`"));
    let num = |k: &str| -> Result<f64, String> {
        let v = get(k)?;
        v.trim()
            .parse::<f64>()
            .map_err(|_| format!("field `{k}` is not a number: {v:?}"))
    };
    let int = |k: &str| -> Result<u64, String> {
        let v = get(k)?;
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("field `{k}` is not a non-negative integer: {v:?}"))
    };
    let time = |k: &str| -> Result<EventTime, String> {
        let v = get(k)?;
        parse_ts(v).ok_or_else(|| format!("field `{k}` is not a time: {v:?}"))
    };
    let ticker = || -> Result<String, String> {
        let t = get("ticker")?;
        crate::names::canonical_ticker(t).map_err(|e| format!("field `ticker`: {e}"))
    };
    match e.field("kind").unwrap_or("bar") {
        "bar" => Ok(Work::Bar {
            ticker: ticker()?,
            ts: time("ts")?,
            open: num("open")?,
            high: num("high")?,
            low: num("low")?,
            close: num("close")?,
            volume: num("volume")?,
        }),
        "ticker" => Ok(Work::Ticker {
            ticker: ticker()?,
            cycle: int("cycle")?,
            of: int("of")?,
            floor: time("floor")?,
            until: time("until")?,
        }),
        "watermark" => Ok(Work::Watermark { ts: time("ts")? }),
        k => Err(format!("unknown message kind {k:?}")),
    }
}

/// Fields of a bar message.
pub fn bar_fields(ticker: &str, b: &crate::bar::Bar) -> Vec<(&'static str, String)> {
    vec![
        ("ticker", ticker.to_string()),
        ("ts", b.ts.to_string()),
        ("open", b.open.to_string()),
        ("high", b.high.to_string()),
        ("low", b.low.to_string()),
        ("close", b.close.to_string()),
        ("volume", b.volume.to_string()),
    ]
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The name/value pairs of an XINFO record (a flat array in RESP2, a map in RESP3).
fn pairs(v: Value) -> Option<Vec<(String, Value)>> {
    match v {
        Value::Array(kv) => Some(
            kv.chunks(2)
                .filter_map(|c| Some((text(c.first()?)?, c.get(1)?.clone())))
                .collect(),
        ),
        Value::Map(m) => Some(
            m.into_iter()
                .filter_map(|(k, v)| Some((text(&k)?, v)))
                .collect(),
        ),
        _ => None,
    }
}

/// Parses a list of `[id, [field, value, ...] | nil]` pairs (XRANGE, XAUTOCLAIM, one stream of
/// XREADGROUP).
fn entries(v: &Value) -> Result<Vec<Entry>, StreamError> {
    let Value::Array(items) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let Value::Array(pair) = it else {
            return Err(StreamError::Reply {
                what: format!("stream entry: {it:?}"),
            });
        };
        let id = pair
            .first()
            .and_then(text)
            .ok_or_else(|| StreamError::Reply {
                what: "stream entry without id".into(),
            })?;
        let fields = match pair.get(1) {
            Some(Value::Array(kv)) => Some(
                kv.chunks(2)
                    .map(|c| {
                        (
                            c.first().and_then(text).unwrap_or_default(),
                            c.get(1).and_then(text).unwrap_or_default(),
                        )
                    })
                    .collect::<Fields>(),
            ),
            _ => None,
        };
        out.push(Entry { id, fields });
    }
    Ok(out)
}

/// The waits between a command's tries on either connection: 20 ms doubling to 1 s, for as long
/// as the connection's patience lasts.
struct Backoff {
    started: std::time::Instant,
    wait: Duration,
    patience: Duration,
}

impl Backoff {
    fn new(patience: Duration) -> Backoff {
        Backoff {
            started: std::time::Instant::now(),
            wait: Duration::from_millis(20),
            patience,
        }
    }

    /// Whether another try is allowed: the patience is not spent.
    fn allows(&self) -> bool {
        self.started.elapsed() < self.patience
    }

    /// Sleeps before the next try.
    fn pause(&mut self) {
        std::thread::sleep(self.wait);
        self.wait = (self.wait * 2).min(Duration::from_secs(1));
    }
}

/// Errors that a reconnect or a short wait cures: a lost connection, or a server still loading
/// its data set after a restart.
fn transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.code() == Some("LOADING")
}

/// A Redis connection that reconnects (with backoff, up to `patience`) when the server goes away.
pub struct Conn {
    client: redis::Client,
    con: Option<redis::Connection>,
    /// The connection stream reads go through (opened on the first read).
    pub(super) raw: Option<super::resp::RawConn>,
    /// The stream reader connection's server id, as registered for waking
    /// ([`super::wake`]; `None`: not open, or the server refused `CLIENT ID`).
    pub(super) reader_id: Option<i64>,
    /// Whether raising the floor wakes the other readers (off once the server refused it).
    pub(super) wake: bool,
    /// Whether a read was sent ahead and its answer not taken yet ([`super::read_ahead`]).
    pub(super) ahead: bool,
    /// How long to keep retrying a command before giving up.
    pub patience: Duration,
    /// Set when a reconnect happened since the flag was last cleared (callers re-read their
    /// pending entries then: a reply lost with the connection may have delivered messages).
    pub reconnected: bool,
}

impl Conn {
    /// Opens a connection to `url`.
    ///
    /// # Errors
    /// A malformed URL or a server that does not answer within the patience.
    pub fn open(url: &str) -> Result<Conn, StreamError> {
        let mut c = Conn {
            client: redis::Client::open(url)?,
            con: None,
            raw: None,
            reader_id: None,
            wake: true,
            ahead: false,
            patience: Duration::from_secs(60),
            reconnected: false,
        };
        c.query::<Value>(&redis::cmd("PING"))?;
        c.reconnected = false;
        Ok(c)
    }

    /// Runs a command, reconnecting and retrying on connection failures.
    ///
    /// # Errors
    /// A server error reply, or no connection within the patience.
    pub fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, StreamError> {
        self.run(|con| cmd.query::<T>(con))
    }

    /// Runs a pipeline (atomic when built so), reconnecting and retrying on connection failures.
    ///
    /// # Errors
    /// A server error reply, or no connection within the patience.
    pub fn query_pipeline<T: redis::FromRedisValue>(
        &mut self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StreamError> {
        self.run(|con| pipe.query::<T>(con))
    }

    /// Runs a Lua script (by its hash, loading it on first use), reconnecting and retrying on
    /// connection failures. A script that changes state must be safe to run twice (a retry after
    /// a lost reply runs it again).
    ///
    /// # Errors
    /// A server error reply (a failing script), or no connection within the patience.
    pub fn script<T: redis::FromRedisValue>(
        &mut self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, StreamError> {
        self.run(|con| {
            let mut inv = script.prepare_invoke();
            for k in keys {
                inv.key(k);
            }
            for a in args {
                inv.arg(a);
            }
            inv.invoke::<T>(con)
        })
    }

    /// Runs `f` on the connection, reconnecting and retrying it on transient failures.
    fn run<T>(
        &mut self,
        f: impl Fn(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StreamError> {
        let mut backoff = Backoff::new(self.patience);
        loop {
            if self.con.is_none() {
                match self
                    .client
                    .get_connection_with_timeout(Duration::from_secs(2))
                {
                    Ok(c) => {
                        // A server that stops answering fails a command after the timeout
                        // (then reconnect and retry within the patience) instead of hanging it:
                        // longer than any blocking read this crate issues.
                        c.set_read_timeout(Some(Duration::from_secs(30)))?;
                        c.set_write_timeout(Some(Duration::from_secs(10)))?;
                        self.con = Some(c);
                        self.reconnected = true;
                    }
                    Err(e) if backoff.allows() => {
                        tracing::warn!(error = %e, "redis unreachable, retrying");
                        backoff.pause();
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let Some(con) = self.con.as_mut() else {
                continue;
            };
            match f(con) {
                Ok(v) => return Ok(v),
                Err(e) if transient(&e) && backoff.allows() => {
                    tracing::warn!(error = %e, "redis connection lost, reconnecting");
                    self.con = None;
                    backoff.pause();
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Runs `f` on the stream reader's connection ([`super::resp`]), opening it when needed,
    /// and reconnecting and retrying on transient failures like [`Conn::query`]; after a failure
    /// [`Conn::reconnected`] is set, since a lost reply may have delivered messages.
    pub(super) fn with_reader<T>(
        &mut self,
        mut f: impl FnMut(&mut super::resp::RawConn) -> Result<T, super::resp::RespError>,
    ) -> Result<T, StreamError> {
        let mut backoff = Backoff::new(self.patience);
        loop {
            if self.raw.is_none() {
                let info = self.client.get_connection_info();
                match super::resp::RawConn::open(info, Duration::from_secs(2)) {
                    Ok(c) => self.raw = Some(c),
                    Err(e) if e.transient() && backoff.allows() => {
                        tracing::warn!(error = %e, "redis unreachable, retrying");
                        backoff.pause();
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let Some(conn) = self.raw.as_mut() else {
                continue;
            };
            match f(conn) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    // A reply may be half read: the connection goes.
                    self.drop_reader();
                    if !(e.transient() && backoff.allows()) {
                        return Err(e.into());
                    }
                    tracing::warn!(error = %e, "redis connection lost, reconnecting");
                    backoff.pause();
                }
            }
        }
    }

    /// Takes the answer to an XREADGROUP already sent on the reader's connection. A lost
    /// connection answers nothing (with [`Conn::reconnected`] set: the lost reply may have
    /// delivered messages); a vanished group is made again and answers nothing.
    pub(super) fn answer(
        &mut self,
        keys: &Keys,
        timeout: Duration,
    ) -> Result<Vec<Entry>, StreamError> {
        let Some(raw) = self.raw.as_mut() else {
            return Ok(Vec::new());
        };
        match raw.receive_entries(timeout) {
            Ok(entries) => Ok(entries),
            Err(e) => {
                // A reply may be half read: the connection goes.
                self.drop_reader();
                match e {
                    super::resp::RespError::Server { code, .. } if code == "NOGROUP" => {
                        self.ensure_group(keys)?;
                        Ok(Vec::new())
                    }
                    e if e.transient() => {
                        tracing::warn!(error = %e, "redis connection lost in a read, reconnecting");
                        Ok(Vec::new())
                    }
                    e => Err(e.into()),
                }
            }
        }
    }

    /// Drops the stream reader's connection after a failure (the next read opens another).
    pub(super) fn drop_reader(&mut self) {
        self.raw = None;
        self.reader_id = None;
        self.ahead = false;
        self.reconnected = true;
    }

    /// Creates the consumer group (and the stream) unless it exists; new groups start at the
    /// stream's beginning so a backlog written before the first worker is not skipped.
    ///
    /// # Errors
    /// Redis errors other than "group exists".
    pub fn ensure_group(&mut self, keys: &Keys) -> Result<(), StreamError> {
        let mut c = redis::cmd("XGROUP");
        c.arg("CREATE")
            .arg(keys.stream())
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match self.query::<Value>(&c) {
            Ok(_) => Ok(()),
            Err(StreamError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Appends a message to `stream`, trimming it to about `maxlen` entries; returns its id.
    ///
    /// # Errors
    /// Redis errors.
    pub fn xadd<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        stream: &str,
        maxlen: usize,
        fields: &[(K, V)],
    ) -> Result<String, StreamError> {
        let mut c = redis::cmd("XADD");
        c.arg(stream).arg("MAXLEN").arg("~").arg(maxlen).arg("*");
        for (k, v) in fields {
            c.arg(k.as_ref()).arg(v.as_ref());
        }
        self.query(&c)
    }

    /// Appends many messages in one round trip (a retried pipeline may append some twice; the
    /// quality gate quarantines such duplicates as `duplicate_time`).
    ///
    /// # Errors
    /// Redis errors.
    pub fn xadd_many(
        &mut self,
        stream: &str,
        maxlen: usize,
        messages: &[Vec<(&str, String)>],
    ) -> Result<(), StreamError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for fields in messages {
            let c = pipe
                .cmd("XADD")
                .arg(stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*");
            for (k, v) in fields {
                c.arg(*k).arg(v.as_str());
            }
            c.ignore();
        }
        self.run(|con| pipe.query::<()>(con))
    }

    /// Reads up to `count` messages for `consumer`: its own pending ones after id `pending_after`
    /// (`"0"` for all) when given, else new ones, waiting up to `block` for them (zero: not at
    /// all; Redis wakes a blocked reader at once when a message comes, but ends an empty wait
    /// only at its own timer tick, ~20 ms here, whatever `block` says).
    ///
    /// # Errors
    /// Redis errors or an unexpected reply.
    pub fn read(
        &mut self,
        keys: &Keys,
        consumer: &str,
        count: usize,
        block: Duration,
        pending_after: Option<&str>,
    ) -> Result<Vec<Entry>, StreamError> {
        if self.ahead {
            // The read sent ahead answers first on the reader's connection.
            let entries = self.take_read_ahead(keys)?;
            if pending_after.is_none() {
                return Ok(entries);
            }
            // Asked for own pending messages instead (after a reconnect): those just read are
            // pending for this consumer too, and its pending pages read them again.
        }
        let mut c = redis::cmd("XREADGROUP");
        c.arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(count);
        if pending_after.is_none() && !block.is_zero() {
            c.arg("BLOCK").arg(block.as_millis().max(1) as u64);
        }
        c.arg("STREAMS")
            .arg(keys.stream())
            .arg(pending_after.unwrap_or(">"));
        let wait = if pending_after.is_none() {
            block
        } else {
            Duration::ZERO
        };
        // Longer than the blocking wait: a server that stops answering fails the read instead
        // of hanging it.
        let timeout = wait + Duration::from_secs(30);
        match self.with_reader(|raw| raw.xreadgroup(&c, timeout)) {
            // The group vanished (the stream was deleted): recreate it and report nothing read.
            Err(StreamError::Read(super::resp::RespError::Server { code, .. }))
                if code == "NOGROUP" =>
            {
                self.ensure_group(keys)?;
                Ok(Vec::new())
            }
            r => r,
        }
    }

    /// Claims entries pending for longer than `min_idle` in other (dead) consumers.
    ///
    /// # Errors
    /// Redis errors or an unexpected reply.
    pub fn autoclaim(
        &mut self,
        keys: &Keys,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Entry>, StreamError> {
        let mut c = redis::cmd("XAUTOCLAIM");
        c.arg(keys.stream())
            .arg(GROUP)
            .arg(consumer)
            .arg(min_idle.as_millis() as u64)
            .arg("0-0")
            .arg("COUNT")
            .arg(count);
        let v: Value = self.query(&c)?;
        match &v {
            Value::Array(parts) => match parts.get(1) {
                Some(list) => entries(list),
                None => Ok(Vec::new()),
            },
            other => Err(StreamError::Reply {
                what: format!("XAUTOCLAIM: {other:?}"),
            }),
        }
    }

    /// Resets the idle time of entries this consumer still works on, so nobody reclaims them.
    ///
    /// # Errors
    /// Redis errors.
    pub fn touch(&mut self, keys: &Keys, consumer: &str, ids: &[&str]) -> Result<(), StreamError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = redis::cmd("XCLAIM");
        c.arg(keys.stream()).arg(GROUP).arg(consumer).arg(0);
        for id in ids {
            c.arg(*id);
        }
        c.arg("JUSTID");
        self.query::<Value>(&c).map(|_| ())
    }

    /// Moves to `consumer` every pending entry of the consumers named `prefix…` that are not in
    /// `alive`; returns how many. Used at start-up, so a run restarted with a different shape
    /// re-reads the departed consumers' messages before it moves on.
    ///
    /// # Errors
    /// Redis errors or an unexpected reply.
    pub fn adopt(
        &mut self,
        keys: &Keys,
        consumer: &str,
        prefix: &str,
        alive: &std::collections::HashSet<String>,
    ) -> Result<u64, StreamError> {
        let mut c = redis::cmd("XINFO");
        c.arg("CONSUMERS").arg(keys.stream()).arg(GROUP);
        let v: Value = self.query(&c)?;
        let Value::Array(list) = v else {
            return Ok(0);
        };
        let mut names = Vec::new();
        for item in list {
            let Some(fields) = pairs(item) else {
                continue;
            };
            if let Some(name) = fields
                .iter()
                .find(|(k, _)| k == "name")
                .and_then(|(_, v)| text(v))
                && name.starts_with(prefix)
                && !alive.contains(&name)
            {
                names.push(name);
            }
        }
        let mut moved = 0;
        for name in names {
            loop {
                let mut p = redis::cmd("XPENDING");
                p.arg(keys.stream())
                    .arg(GROUP)
                    .arg("-")
                    .arg("+")
                    .arg(1000)
                    .arg(&name);
                let Value::Array(rows) = self.query::<Value>(&p)? else {
                    break;
                };
                let ids: Vec<String> = rows
                    .iter()
                    .filter_map(|r| match r {
                        Value::Array(f) => f.first().and_then(text),
                        _ => None,
                    })
                    .collect();
                if ids.is_empty() {
                    break;
                }
                let mut x = redis::cmd("XCLAIM");
                x.arg(keys.stream()).arg(GROUP).arg(consumer).arg(0);
                for id in &ids {
                    x.arg(id);
                }
                x.arg("JUSTID");
                self.query::<Value>(&x)?;
                moved += ids.len() as u64;
            }
            let mut d = redis::cmd("XGROUP");
            d.arg("DELCONSUMER")
                .arg(keys.stream())
                .arg(GROUP)
                .arg(&name);
            self.query::<Value>(&d)?;
        }
        Ok(moved)
    }

    /// Acknowledges entries.
    ///
    /// # Errors
    /// Redis errors.
    pub fn ack(&mut self, keys: &Keys, ids: &[&str]) -> Result<(), StreamError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut c = redis::cmd("XACK");
        c.arg(keys.stream()).arg(GROUP);
        for id in ids {
            c.arg(*id);
        }
        self.query::<i64>(&c).map(|_| ())
    }

    /// The floor (`i64::MIN` before any message set it).
    ///
    /// # Errors
    /// Redis errors.
    pub fn floor(&mut self, keys: &Keys) -> Result<EventTime, StreamError> {
        let mut c = redis::cmd("ZSCORE");
        c.arg(keys.floor()).arg("floor");
        let v: Option<f64> = self.query(&c)?;
        Ok(v.map_or(EventTime::MIN, |f| f as EventTime))
    }

    /// Moves an entry to the dead-letter stream with its error, then acknowledges it.
    ///
    /// # Errors
    /// Redis errors (the entry then stays pending and is retried).
    pub fn dead_letter(
        &mut self,
        keys: &Keys,
        entry: &Entry,
        consumer: &str,
        error: &str,
    ) -> Result<(), StreamError> {
        let original = bounded(&serde_json::to_string(&entry.fields).unwrap_or_default());
        let error = bounded(error);
        self.xadd(
            &keys.dead_letter(),
            1_000_000,
            &[
                ("id", entry.id.as_str()),
                ("error", error.as_str()),
                ("consumer", consumer),
                ("fields", original.as_str()),
            ],
        )?;
        self.ack(keys, &[entry.id.as_str()])
    }

    /// Counts one more failure of entry `id`; returns the count.
    ///
    /// # Errors
    /// Redis errors.
    pub fn fail(&mut self, keys: &Keys, id: &str) -> Result<u64, StreamError> {
        let mut c = redis::cmd("HINCRBY");
        c.arg(keys.failures()).arg(id).arg(1);
        self.query(&c)
    }

    /// The entries of a stream (for tests and tools).
    ///
    /// # Errors
    /// Redis errors.
    pub fn range(&mut self, stream: &str) -> Result<Vec<Entry>, StreamError> {
        let mut c = redis::cmd("XRANGE");
        c.arg(stream).arg("-").arg("+");
        let v: Value = self.query(&c)?;
        entries(&v)
    }

    /// Every key matching `pattern` (SCAN, a thousand at a time: it never blocks the server as
    /// KEYS would).
    ///
    /// # Errors
    /// Redis errors.
    pub fn scan(&mut self, pattern: &str) -> Result<Vec<String>, StreamError> {
        let mut cursor = 0u64;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = self.query(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000),
            )?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Entries delivered to the group and not yet acknowledged (XPENDING's summary count).
    ///
    /// # Errors
    /// Redis errors, or an answer that is not XPENDING's summary.
    pub fn pending_count(&mut self, keys: &Keys) -> Result<u64, StreamError> {
        let mut c = redis::cmd("XPENDING");
        c.arg(keys.stream()).arg(GROUP);
        match self.query(&c)? {
            Value::Array(a) => match a.first() {
                Some(Value::Int(n)) => Ok((*n).max(0) as u64),
                _ => Err(StreamError::Reply {
                    what: format!("XPENDING's summary starts with a count, got {a:?}"),
                }),
            },
            v => Err(StreamError::Reply {
                what: format!("XPENDING answers with an array, got {v:?}"),
            }),
        }
    }

    /// Entries added to the stream and not yet delivered to the group (`None` when Redis cannot
    /// tell), for back-pressure in feeders.
    ///
    /// # Errors
    /// Redis errors.
    pub fn lag(&mut self, keys: &Keys) -> Result<Option<u64>, StreamError> {
        let mut c = redis::cmd("XINFO");
        c.arg("GROUPS").arg(keys.stream());
        let v: Value = self.query(&c)?;
        let Value::Array(groups) = v else {
            return Ok(None);
        };
        for g in groups {
            let Some(pairs) = pairs(g) else {
                continue;
            };
            let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            if get("name").as_ref().and_then(text).as_deref() != Some(GROUP) {
                continue;
            }
            return Ok(match get("lag") {
                Some(Value::Int(n)) => Some(n.max(0) as u64),
                _ => None,
            });
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: "1700000000000-0".into(),
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn decodes_bars_items_and_watermarks() {
        let b = decode(&entry(&[
            ("ticker", "AAPL"),
            ("ts", "2018-01-02"),
            ("open", "1"),
            ("high", "2"),
            ("low", "0.5"),
            ("close", "NaN"),
            ("volume", "10"),
        ]))
        .unwrap();
        match b {
            Work::Bar { ts, close, .. } => {
                assert_eq!(ts, 1_514_851_200);
                assert!(
                    close.is_nan(),
                    "NaN is a number here; the quality gate rejects it"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            decode(&entry(&[("kind", "watermark"), ("ts", "5")])).unwrap(),
            Work::Watermark { ts: 5 }
        );
        assert_eq!(entry(&[]).added_ms(), Some(1_700_000_000_000));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let e = |f: &[(&str, &str)]| decode(&entry(f)).unwrap_err();
        assert!(e(&[("ticker", "A")]).contains("missing field `ts`"));
        assert!(
            e(&[
                ("ticker", "A"),
                ("ts", "1"),
                ("open", "abc"),
                ("high", "1"),
                ("low", "1"),
                ("close", "1"),
                ("volume", "1")
            ])
            .contains("`open` is not a number")
        );
        assert!(
            e(&[("ticker", "../../etc"), ("ts", "1")]).contains("ticker \"../../etc\" has '/'")
        );
        assert!(e(&[("kind", "launch"), ("ticker", "A")]).contains("unknown message kind"));
        let trimmed = Entry {
            id: "1-0".into(),
            fields: None,
        };
        assert!(decode(&trimmed).unwrap_err().contains("trimmed"));
    }

    #[test]
    fn only_times_within_the_producers_clock_may_move_the_floor() {
        let clock_ms = Some(1_700_000_000_000);
        let bar = |ts| Work::Watermark { ts };
        assert!(
            bar(1_700_000_000 + 86_400)
                .check_times(clock_ms, 86_400)
                .is_ok()
        );
        assert!(
            bar(1_700_000_000 + 86_401)
                .check_times(clock_ms, 86_400)
                .is_err()
        );
        assert!(bar(i64::MAX).check_times(clock_ms, i64::MAX).is_ok());
        assert!(bar(i64::MAX).check_times(clock_ms, 86_400).is_err());
        assert!(bar(-5_000_000_000).check_times(clock_ms, 0).is_ok());
        let item = |floor, until| Work::Ticker {
            ticker: "A".into(),
            cycle: 1,
            of: 1,
            floor,
            until,
        };
        assert!(item(0, 1_600_000_000).check_times(clock_ms, 0).is_ok());
        assert!(
            item(1_600_000_002, 1_600_000_000)
                .check_times(clock_ms, 0)
                .is_err()
        );
        assert!(
            item(0, 1_800_000_000)
                .check_times(clock_ms, 86_400)
                .is_err()
        );
        assert!(bar(0).check_times(None, 86_400).is_err());
    }
}
