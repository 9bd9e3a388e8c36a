//! A live run (`fdp orchestrate` work items read by `fdp run`) whose bars come from providers on
//! loopback servers, against the real Redis and PostgreSQL: the first provider dying mid-run
//! costs no bar, and every provider down ends with each item dead-lettered with the reason.

use std::time::Duration;

use findashpro::sources::redis_stream::{Conn, Keys};
use findashpro::stream::{self, Ending, StreamOptions};

use super::provider_controls::polygon_daily_body;
use super::providers::{KEY, Server, answer, av_daily_body, redis_url};
use crate::common::{TestDb, pipeline_text};

const TICKERS: [&str; 4] = ["AAA", "BRK.B", "EURUSD", "CCC"];
/// Bars each provider gives per ticker (weekdays from 2024-01-02).
const BARS: usize = 80;

/// A database, a key prefix (the run's and the providers' controls'), removed afterwards.
struct Live {
    db: TestDb,
    client: tokio_postgres::Client,
    rt: tokio::runtime::Runtime,
    prefix: String,
    dir: tempfile::TempDir,
}

impl Live {
    fn new(name: &str) -> Live {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let (db, client) = rt.block_on(TestDb::new());
        Live {
            db,
            client,
            rt,
            prefix: format!("fdptest:{name}:{}", std::process::id()),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Orchestrates one cycle of the providers pipeline and runs it until idle.
    fn run(&self, av: &str, polygon: &str, max_failures: u64) -> Ending {
        let text = format!(
            "name = \"live\"\n[source]\nkind = \"providers\"\ntickers = {tickers:?}\n\
             start = \"2024-01-01\"\nend = \"2024-04-30\"\nprefix = \"{prefix}\"\ntimeout_seconds = 3\n\
             breaker_failures = 2\nbreaker_cooldown_seconds = 30\n\
             providers = [{{ name = \"alpha_vantage\", base_url = \"{av}\", tier = \"premium\" }}, \
             {{ name = \"polygon\", base_url = \"{polygon}\", tier = \"premium\" }}]\n\
             [[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 10\n\
             [model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_10\"\n",
            tickers = TICKERS,
            prefix = self.prefix,
        );
        let p = pipeline_text(&text, self.dir.path());
        // SAFETY: as in `provider_controls::with_polygon_key`: every test of this binary that
        // sets these variables sets them to the same value, and none removes them.
        unsafe {
            std::env::set_var("FDP_ALPHA_VANTAGE_KEY", KEY);
            std::env::set_var("FDP_POLYGON_KEY", KEY);
        }
        // A cut-off now, after every bar: each ticker is one work item over its whole range.
        let now = findashpro::time::wall_unix();
        stream::orchestrate(&p, &redis_url(), &self.prefix, now, 10_000).expect("orchestrate");
        let mut o = StreamOptions::new(&redis_url(), &self.db.url, "live");
        o.prefix = self.prefix.clone();
        o.cluster.workers = 2;
        o.claim_idle = Duration::from_millis(600);
        o.idle_shutdown = Some(Duration::from_millis(1500));
        o.max_failures = max_failures;
        o.stop_file = Some(self.dir.path().join("STOP"));
        stream::run(&p, &o).expect("the run goes on")
    }

    fn scalar(&self, sql: &str) -> i64 {
        self.rt
            .block_on(self.client.query_one(sql, &[]))
            .expect("query")
            .get(0)
    }

    fn redis(&self) -> Conn {
        Conn::open(&redis_url()).expect("Redis answers at REDIS_URL")
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(mut r) = Conn::open(&redis_url()) {
            let _ = r.delete_prefix(&self.prefix);
        }
    }
}

#[test]
fn a_live_run_whose_first_provider_dies_mid_run_finishes_with_every_bar() {
    let live = Live::new("livefailover");
    let body = av_daily_body(BARS);
    // Alpha Vantage answers two items, then its server is gone.
    let av = Server::start(vec![answer(200, &body), answer(200, &body)]);
    let polygon = Server::start(
        TICKERS
            .iter()
            .map(|t| answer(200, &polygon_daily_body(t, BARS)))
            .collect(),
    );
    assert_eq!(live.run(&av.url, &polygon.url, 3), Ending::Idle);
    for t in TICKERS {
        assert_eq!(
            live.scalar(&format!(
                "SELECT count(*) FROM bars WHERE run_id = 'live' AND ticker = '{t}'"
            )),
            BARS as i64,
            "{t} has every bar"
        );
    }
    assert!(live.scalar("SELECT count(*) FROM signals WHERE run_id = 'live'") > 0);
    let keys = Keys::new(&live.prefix);
    let mut r = live.redis();
    assert!(r.range(&keys.dead_letter()).expect("dead").is_empty());
    assert_eq!(crate::common::pending(&mut r, &keys), 0);
    assert_eq!(polygon.targets().len(), 2, "the two items after the death");
    assert!(av.targets().len() >= 2);
}

#[test]
fn a_live_run_with_every_provider_down_dead_letters_each_item_with_the_reason() {
    let live = Live::new("livedown");
    let (av, polygon) = (Server::start(vec![]), Server::start(vec![]));
    assert_eq!(live.run(&av.url, &polygon.url, 2), Ending::Idle);
    let keys = Keys::new(&live.prefix);
    let mut r = live.redis();
    let dead = r.range(&keys.dead_letter()).expect("dead letters");
    assert_eq!(dead.len(), TICKERS.len(), "one per item, none lost");
    let mut named = Vec::new();
    for d in &dead {
        let m = d.map();
        let error = m.get("error").copied().unwrap_or_default();
        assert!(
            error.starts_with("failed 2 times")
                && error.contains("no provider gave")
                && error.contains("alpha_vantage: ")
                && error.contains("polygon: ")
                && !error.contains(KEY),
            "{error}"
        );
        named.push(m.get("fields").copied().unwrap_or_default().to_string());
    }
    for t in TICKERS {
        assert!(
            named.iter().any(|f| f.contains(&format!("\"{t}\""))),
            "{t} among {named:?}"
        );
    }
    assert_eq!(crate::common::pending(&mut r, &keys), 0);
    assert_eq!(
        live.scalar("SELECT count(*) FROM audit_log WHERE event_type = 'dead_letter'"),
        TICKERS.len() as i64
    );
    assert_eq!(live.scalar("SELECT count(*) FROM bars"), 0);
}
