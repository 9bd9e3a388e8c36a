//! The controls every provider request passes, against real Redis and loopback servers: the
//! response cache, the tier manager's budgets and daily spend, the cap on requests in flight,
//! and the provider metrics they leave.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use findashpro::config::Pipeline;
use findashpro::sources::providers::budget::{Budget, Charge, TierManager};
use findashpro::sources::providers::metrics;
use findashpro::sources::providers::source::ProviderSource;
use findashpro::sources::redis_stream::Conn;

use super::providers::{KEY, RedisPrefix, Server, answer, av_daily_body, busiest, redis_url};

/// A Polygon aggregates body (PROVIDERS.md §3.3's shape) of `n` weekdays from 2024-01-02, each
/// stamped at midnight New York in milliseconds.
pub(super) fn polygon_daily_body(ticker: &str, n: usize) -> String {
    use chrono::TimeZone;
    let mut rows = Vec::new();
    let mut d = chrono::NaiveDate::from_ymd_opt(2024, 1, 2).expect("date");
    while rows.len() < n {
        if chrono::Datelike::weekday(&d).number_from_monday() <= 5 {
            let t = chrono_tz::America::New_York
                .from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
                .single()
                .expect("one instant")
                .timestamp_millis();
            let p = 30_000.0 + rows.len() as f64 * 10.0;
            rows.push(format!(
                r#"{{"v":12.5,"vw":{p},"o":{p},"c":{p},"h":{},"l":{},"t":{t},"n":3}}"#,
                p + 50.0,
                p - 50.0
            ));
        }
        d = d.succ_opt().expect("next day");
    }
    format!(
        r#"{{"ticker":"{ticker}","queryCount":{n},"resultsCount":{n},"adjusted":false,"results":[{}],"status":"OK","request_id":"r","count":{n}}}"#,
        rows.join(",")
    )
}

/// A loopback server answering every connection on a thread of its own after `stall`, counting
/// requests and the most it held at once, and noting when each arrived.
struct Concurrent {
    url: String,
    targets: Arc<std::sync::Mutex<Vec<String>>>,
    arrivals: Arc<std::sync::Mutex<Vec<std::time::Instant>>>,
    requests: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

fn concurrent_server(body: String, stall: Duration) -> Concurrent {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let now = Arc::new(AtomicUsize::new(0));
    let targets = Arc::new(std::sync::Mutex::new(Vec::new()));
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (r, m, seen, arrived) = (
        Arc::clone(&requests),
        Arc::clone(&most),
        Arc::clone(&targets),
        Arc::clone(&arrivals),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            if let Ok(mut a) = arrived.lock() {
                a.push(std::time::Instant::now());
            }
            let (body, r, m, now) = (
                body.clone(),
                Arc::clone(&r),
                Arc::clone(&m),
                Arc::clone(&now),
            );
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                if let (Some(t), Ok(mut s)) = (line.split_whitespace().nth(1), seen.lock()) {
                    s.push(t.to_string());
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                        break;
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                let held = now.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(held, Ordering::SeqCst);
                std::thread::sleep(stall);
                now.fetch_sub(1, Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    Concurrent {
        url,
        targets,
        arrivals,
        requests,
        most,
    }
}

/// A providers pipeline file in `dir` with `source` lines added to `[source]`.
fn pipeline(dir: &Path, tickers: &[&str], end: &str, source: &str) -> ProviderSource {
    let path = dir.join("p.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"controls\"\n[source]\nkind = \"providers\"\ntickers = {tickers:?}\n\
             start = \"2024-01-01\"\nend = \"{end}\"\ntimeout_seconds = 5\n{source}\n\
             [[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 10\n[model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_10\"\n"
        ),
    )
    .expect("pipeline");
    let loaded = Pipeline::load(&path).expect("valid pipeline");
    ProviderSource::open(&loaded).expect("source")
}

#[test]
fn a_past_range_is_answered_from_the_cache_and_a_range_reaching_now_is_asked_again() {
    let prefix = RedisPrefix::new("cache");
    let server = concurrent_server(polygon_daily_body("X:BTCUSD", 40), Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let providers = format!(
        "prefix = \"{}\"\nproviders = [{{ name = \"polygon\", base_url = \"{}\", tier = \"premium\", symbols = {{ BTCUSD = \"X:BTCUSD\" }} }}]",
        prefix.0, server.url
    );
    // SAFETY of the environment: the key is read when the source opens, from this variable only.
    let source = with_polygon_key(|| pipeline(dir.path(), &["BTCUSD"], "2024-03-31", &providers));
    let tickers = source.tickers();
    let first = source.load_ticker("BTCUSD", &tickers).expect("fetched");
    let again = source.load_ticker("BTCUSD", &tickers).expect("cached");
    assert_eq!(first.0.len(), 40);
    assert_eq!(first.0, again.0, "the cached answer is the provider's");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1, "asked once");
    let asked = server.targets.lock().expect("targets").clone();
    assert!(
        asked[0].starts_with("/v2/aggs/ticker/X%3ABTCUSD/range/1/day/"),
        "the pipeline's symbol for Polygon, encoded: {asked:?}"
    );
    assert!(
        metrics::render()
            .contains("fdp_provider_cache_lookups_total{provider=\"polygon\",result=\"hit\"}")
    );
    // Crypto in the tens of thousands, as sent.
    assert_eq!(first.0.close[0], 30_000.0);

    // A range ending in the future holds bars still to come: never cached.
    let live = with_polygon_key(|| pipeline(dir.path(), &["BTCUSD"], "2999-12-31", &providers));
    let t = live.tickers();
    live.load_ticker("BTCUSD", &t).expect("fetched");
    live.load_ticker("BTCUSD", &t).expect("fetched");
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
}

/// Sets `FDP_POLYGON_KEY` for the source's opening. Tests in this binary run on threads of one
/// process; the other tests that need a Polygon key set the same value.
fn with_polygon_key<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: every test of this binary that sets this variable sets it to the same value, and
    // none removes it, so a concurrent reader sees it set or unset, never torn.
    unsafe { std::env::set_var("FDP_POLYGON_KEY", KEY) };
    f()
}

#[test]
fn no_more_requests_are_in_flight_than_the_process_allows() {
    let prefix = RedisPrefix::new("inflight");
    let server = concurrent_server(polygon_daily_body("T", 5), Duration::from_millis(150));
    let dir = tempfile::tempdir().expect("tempdir");
    let names: Vec<String> = (0..9).map(|i| format!("T{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let source = with_polygon_key(|| {
        pipeline(
            dir.path(),
            &refs,
            "2024-03-31",
            &format!(
                "prefix = \"{}\"\nmax_in_flight = 3\ncache_ttl_seconds = 0\nproviders = [{{ name = \"polygon\", base_url = \"{}\", tier = \"premium\" }}]",
                prefix.0, server.url
            ),
        )
    });
    let source = Arc::new(source);
    let tickers = Arc::new(source.tickers());
    let threads: Vec<_> = names
        .iter()
        .map(|n| {
            let (s, t, n) = (Arc::clone(&source), Arc::clone(&tickers), n.clone());
            std::thread::spawn(move || s.load_ticker(&n, &t).map(|(b, _)| b.len()))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread").expect("fetched"), 5);
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 9);
    let most = server.most.load(Ordering::SeqCst);
    assert!((2..=3).contains(&most), "{most} requests in flight at once");
}

#[test]
fn a_provider_past_the_daily_spend_is_skipped_for_the_next_one() {
    let prefix = RedisPrefix::new("spend");
    let tickers = ["AAA", "BBB", "CCC", "DDD"];
    let av = Server::start((0..2).map(|_| answer(200, &av_daily_body(30))).collect());
    let polygon = concurrent_server(polygon_daily_body("P", 30), Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    // SAFETY: as in `with_polygon_key`; no other test sets this variable to another value.
    unsafe { std::env::set_var("FDP_ALPHA_VANTAGE_KEY", KEY) };
    let source = with_polygon_key(|| {
        pipeline(
            dir.path(),
            &tickers,
            "2024-03-31",
            &format!(
                "prefix = \"{}\"\ndaily_spend = 1.0\nproviders = [\
                 {{ name = \"alpha_vantage\", base_url = \"{}\", tier = \"premium\", cost_per_request = 0.4 }}, \
                 {{ name = \"polygon\", base_url = \"{}\", tier = \"premium\" }}]",
                prefix.0, av.url, polygon.url
            ),
        )
    });
    let t = source.tickers();
    for name in tickers {
        let (bars, _) = source.load_ticker(name, &t).expect("fetched");
        assert_eq!(bars.len(), 30, "{name}");
    }
    assert_eq!(
        av.targets().len(),
        2,
        "0.4 + 0.4 spent; a third would pass 1.0"
    );
    assert_eq!(polygon.requests.load(Ordering::SeqCst), 2);
    let text = metrics::render();
    assert!(text.contains(
        "fdp_provider_requests_total{provider=\"alpha_vantage\",outcome=\"skipped_budget\"}"
    ));
    assert!(text.contains("fdp_provider_spend_total{provider=\"alpha_vantage\"}"));
}

#[test]
fn budgets_refuse_past_each_window_and_warn_once_at_80_percent_of_spend() {
    let prefix = RedisPrefix::new("budget");
    let mut conn = Conn::open(&redis_url()).expect("redis");
    let day = TierManager::new(
        &prefix.0,
        "tiingo",
        "free",
        Budget {
            requests_per_day: Some(2),
            credits_per_request: 1,
            ..Budget::default()
        },
        None,
    );
    assert!(matches!(day.charge(&mut conn), Ok(Charge::Charged { .. })));
    assert!(matches!(day.charge(&mut conn), Ok(Charge::Charged { .. })));
    match day.charge(&mut conn).expect("charge") {
        Charge::Refused { budget, resets_in } => {
            assert_eq!(budget, "requests_per_day");
            assert!(resets_in <= Duration::from_secs(86_400));
        }
        c => panic!("a third request passed: {c:?}"),
    }
    let credits = TierManager::new(
        &prefix.0,
        "twelve_data",
        "free",
        Budget {
            credits_per_request: 3,
            credits_per_minute: Some(7),
            ..Budget::default()
        },
        None,
    );
    assert!(matches!(
        credits.charge(&mut conn),
        Ok(Charge::Charged { .. })
    ));
    assert!(matches!(
        credits.charge(&mut conn),
        Ok(Charge::Charged { .. })
    ));
    assert!(matches!(
        credits.charge(&mut conn),
        Ok(Charge::Refused { budget, .. }) if budget == "credits_per_minute"
    ));
    // Spend shared by two providers: 0.3 each against 1.0; the request reaching 0.9 warns, the
    // one that would reach 1.2 is refused, whichever provider sends it.
    let spend = |p: &str| {
        TierManager::new(
            &prefix.0,
            p,
            "paid",
            Budget {
                credits_per_request: 1,
                cost_per_request: 0.3,
                ..Budget::default()
            },
            Some(1.0),
        )
    };
    let (a, b) = (spend("fmp"), spend("polygon"));
    let warned: Vec<bool> = [&a, &b, &a]
        .iter()
        .map(|m| match m.charge(&mut conn).expect("charge") {
            Charge::Charged { warn, .. } => warn,
            c => panic!("refused early: {c:?}"),
        })
        .collect();
    assert_eq!(warned, [false, false, true]);
    assert!(matches!(
        b.charge(&mut conn),
        Ok(Charge::Refused { budget, .. }) if budget == "daily_spend"
    ));
}

/// `fdp fetch` into the catalog: a ticker no provider gives fails the fetch (exit 4) without
/// losing the other; the next fetch asks only for the failed ticker; a later `--until` asks only
/// for the bars after each file's end; a complete catalog asks nothing; a backtest replays it.
#[test]
fn fetch_fills_the_catalog_resumes_after_a_failure_and_asks_only_for_what_is_missing() {
    use findashpro::bar::Tickers;
    use findashpro::config::provider::Interval;
    use findashpro::sinks::catalog::Catalog;
    let prefix = RedisPrefix::new("fetch");
    let body = av_daily_body(80);
    let av = Server::start(vec![
        answer(200, &body),
        answer(500, "<html>down</html>"),
        answer(200, &body),
        answer(200, &body),
        answer(200, &body),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"fetch\"\n[source]\nkind = \"providers\"\ntickers = [\"AAA\", \"BRK.B\"]\n\
             start = \"2024-01-01\"\nend = \"2024-03-31\"\nprefix = \"{}\"\ntimeout_seconds = 5\n\
             providers = [{{ name = \"alpha_vantage\", base_url = \"{}\", tier = \"premium\" }}]\n\
             [[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 10\n\
             [model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_10\"\n",
            prefix.0, av.url
        ),
    )
    .expect("pipeline");
    let catalog = dir.path().join("catalog");
    let fetch = |until: &str| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
            .args([
                "fetch",
                &path.to_string_lossy(),
                "--until",
                until,
                "--catalog",
            ])
            .arg(&catalog)
            .env("FDP_ALPHA_VANTAGE_KEY", KEY)
            .env("REDIS_URL", redis_url())
            .output()
            .expect("fdp runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!text.contains(KEY), "the key leaked: {text}");
        (o.status.code(), text)
    };
    let files = Catalog::new(&catalog, Interval::Day);
    let t = Tickers::new(["AAA".to_string(), "BRK.B".to_string()]);
    let len = |name: &str| {
        files
            .read(name, &t)
            .expect("readable")
            .map(|e| e.bars.len())
    };

    let (code, text) = fetch("2024-02-15");
    assert_eq!(code, Some(4), "{text}");
    assert!(text.contains("BRK.B: alpha_vantage: unavailable"), "{text}");
    assert_eq!((len("AAA"), len("BRK.B")), (Some(33), None));

    let (code, text) = fetch("2024-02-15");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("1 tickers fetched, 1 up to date"), "{text}");
    assert_eq!(len("BRK.B"), Some(33));

    let (code, text) = fetch("2024-03-31");
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("2 tickers fetched, 0 up to date, 62 bars added"),
        "{text}"
    );
    assert_eq!((len("AAA"), len("BRK.B")), (Some(64), Some(64)));
    let asked = av.targets();
    assert_eq!(asked.len(), 5);

    let (code, text) = fetch("2024-03-31");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("0 tickers fetched, 2 up to date"), "{text}");
    assert_eq!(av.targets().len(), 5, "a complete catalog asks nothing");

    // The catalog replays as a file source.
    let replay = dir.path().join("replay.toml");
    std::fs::write(
        &replay,
        format!(
            "name = \"replay\"\n[source]\nkind = \"files\"\nformat = \"parquet\"\npaths = [\"catalog/1d/*.parquet\"]\n\
             [quality]\ncalendar = \"weekdays\"\n\
             [[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 10\n\
             [model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_10\"\n[outputs]\ndir = \"{}\"\nreport = false\n",
            dir.path().join("runs").display()
        ),
    )
    .expect("replay pipeline");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(["backtest", &replay.to_string_lossy(), "--run-id", "r"])
        .output()
        .expect("fdp runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("128 bars"), "2 tickers × 64 bars: {out}");
}

#[test]
fn bench_limiter_and_fetch_report_their_figures_and_leave_nothing_in_redis() {
    let bench = |args: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
            .arg("bench")
            .args(args)
            .env("REDIS_URL", redis_url())
            .output()
            .expect("fdp runs");
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success(),
            "{out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        out
    };
    let column = |row: &str, i: usize| -> f64 {
        row.split_whitespace()
            .nth(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("column {i} of {row}"))
    };
    let out = bench(&["limiter", "--workers", "1,2", "--bars", "300"]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|r| column(r, 1) > 0.0), "{out}");

    let out = bench(&[
        "fetch",
        "--workers",
        "2",
        "--tickers",
        "20",
        "--bars",
        "300",
    ]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].starts_with("cold") && rows[1].starts_with("warm"),
        "{out}"
    );
    // Cold: every ticker asked the server once; warm: none did, every bar came from the cache.
    assert_eq!(
        (column(rows[0], 3), column(rows[1], 3)),
        (20.0, 0.0),
        "{out}"
    );
    assert!(rows.iter().all(|r| column(r, 4) == 6_000.0), "{out}");

    // The children's prefixes are `fdpbench:<what>:<pid>`; none may be left by any run.
    let mut conn = Conn::open(&redis_url()).expect("redis");
    for pattern in ["fdpbench:limiter:*", "fdpbench:fetch:*"] {
        let left: Vec<String> = conn.query(redis::cmd("KEYS").arg(pattern)).expect("keys");
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn four_processes_of_four_workers_never_pass_the_limit_the_server_counts() {
    let prefix = RedisPrefix::new("fourprocs");
    // Each answer takes 20 ms, so the clients' requests overlap at the server.
    let polygon = concurrent_server(polygon_daily_body("P", 30), Duration::from_millis(20));
    let dir = tempfile::tempdir().expect("tempdir");
    let tickers: Vec<String> = (0..60).map(|i| format!("T{i:02}")).collect();
    let path = dir.path().join("p.toml");
    // Polygon's premium tier: 100 requests a second. No cache: every load asks.
    std::fs::write(
        &path,
        format!(
            "name = \"four\"\n[source]\nkind = \"providers\"\ntickers = {tickers:?}\n\
             start = \"2024-01-01\"\nend = \"2024-03-31\"\nprefix = \"{}\"\ntimeout_seconds = 10\n\
             cache_ttl_seconds = 0\nproviders = [{{ name = \"polygon\", base_url = \"{}\", tier = \"premium\" }}]\n\
             [quality]\ncalendar = \"weekdays\"\n[[features]]\nkind = \"sma\"\nperiod = 5\n\
             [[features]]\nkind = \"sma\"\nperiod = 10\n\
             [model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_10\"\n\
             [outputs]\ndir = \"{}\"\nreport = false\n",
            prefix.0,
            polygon.url,
            dir.path().join("runs").display()
        ),
    )
    .expect("pipeline");
    let started = std::time::Instant::now();
    let procs: Vec<_> = (0..4)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
                .args(["backtest", &path.to_string_lossy(), "-w", "4"])
                .args(["--run-id", &format!("p{i}")])
                .env("FDP_POLYGON_KEY", KEY)
                .env("REDIS_URL", redis_url())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("fdp starts")
        })
        .collect();
    for p in procs {
        let o = p.wait_with_output().expect("fdp ends");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let elapsed = started.elapsed();
    let arrivals = polygon.arrivals.lock().expect("lock").clone();
    assert_eq!(arrivals.len(), 4 * tickers.len(), "every load asked once");
    let most = busiest(&arrivals, Duration::from_secs(1));
    assert!(
        most <= 100,
        "{most} requests reached the server within one second"
    );
    // The limit was pressed, not avoided: 240 requests need three windows.
    assert!(most >= 60, "only {most} in the busiest second");
    assert!(elapsed >= Duration::from_secs(2), "{elapsed:?}");
    assert!(
        polygon.most.load(Ordering::SeqCst) > 1,
        "the clients ran at once"
    );
}

#[test]
fn a_failing_provider_trips_its_breaker_fails_over_and_is_used_again_once_its_probe_succeeds() {
    let prefix = RedisPrefix::new("recover");
    let body = av_daily_body(40);
    let av = Server::start(vec![
        answer(500, "<html>down</html>"),
        answer(503, "<html>down</html>"),
        answer(200, &body),
        answer(200, &body),
    ]);
    let polygon = concurrent_server(polygon_daily_body("P", 40), Duration::ZERO);
    let dir = tempfile::tempdir().expect("tempdir");
    let source = with_polygon_key(|| {
        // SAFETY: as in `with_polygon_key`, for the Alpha Vantage key.
        unsafe { std::env::set_var("FDP_ALPHA_VANTAGE_KEY", KEY) };
        pipeline(
            dir.path(),
            &["T1", "T2", "T3", "T4", "T5"],
            "2024-03-31",
            &format!(
                "prefix = \"{}\"\nbreaker_failures = 2\nbreaker_cooldown_seconds = 1\ncache_ttl_seconds = 0\n\
                 providers = [{{ name = \"alpha_vantage\", base_url = \"{}\", tier = \"premium\" }}, \
                 {{ name = \"polygon\", base_url = \"{}\", tier = \"premium\" }}]",
                prefix.0, av.url, polygon.url
            ),
        )
    });
    let tickers = source.tickers();
    // Polygon's closes start at 30,000; Alpha Vantage's near 100: the bars say who served.
    let served_by = |t: &str| {
        let (bars, _) = source
            .load_ticker(t, &tickers)
            .expect("some provider serves");
        assert_eq!(bars.len(), 40, "{t}");
        if bars.close[0] >= 30_000.0 {
            "polygon"
        } else {
            "alpha_vantage"
        }
    };
    assert_eq!(served_by("T1"), "polygon", "the first outage fails over");
    assert_eq!(served_by("T2"), "polygon", "the second opens the breaker");
    assert_eq!(
        served_by("T3"),
        "polygon",
        "open: Alpha Vantage is not asked"
    );
    assert_eq!(av.targets().len(), 2);
    std::thread::sleep(Duration::from_millis(1_100));
    assert_eq!(
        served_by("T4"),
        "alpha_vantage",
        "the probe after the cool-down succeeds"
    );
    assert_eq!(served_by("T5"), "alpha_vantage", "closed again");
    assert_eq!(av.targets().len(), 4);
    assert_eq!(polygon.requests.load(Ordering::SeqCst), 3);
}
