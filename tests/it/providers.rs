//! The provider clients against a local HTTP server on loopback that answers with the bodies
//! PROVIDERS.md documents (recorded shapes, faults included): series parsed to the instants they
//! name, every error shape classified, the key nowhere in what comes back.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use findashpro::sources::providers::http::Http;
use findashpro::sources::providers::{
    BarRequest, Interval, ProviderConfig, ProviderError, ProviderKind, Secret, alpha_vantage, yahoo,
};

/// One canned answer: status, extra headers, body; `cut` closes the connection after sending
/// that many bytes of a body announced whole (a truncated answer); `stall` waits before answering.
#[derive(Clone, Default)]
pub(super) struct Canned {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    cut: Option<usize>,
    stall: Option<Duration>,
}

pub(super) fn answer(status: u16, body: &str) -> Canned {
    Canned {
        status,
        body: body.as_bytes().to_vec(),
        ..Canned::default()
    }
}

/// A loopback HTTP/1.1 server answering each connection with the next canned answer and
/// recording each request's target.
pub(super) struct Server {
    pub(super) url: String,
    seen: Arc<Mutex<Vec<String>>>,
    /// Each request's `Authorization` (or `X-Finnhub-Token`) header ("" when none).
    auth: Arc<Mutex<Vec<String>>>,
}

impl Server {
    pub(super) fn start(answers: Vec<Canned>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let auth = Arc::new(Mutex::new(Vec::new()));
        let (log, auth_log) = (Arc::clone(&seen), Arc::clone(&auth));
        std::thread::spawn(move || {
            for (stream, a) in listener.incoming().zip(answers) {
                let Ok(stream) = stream else { return };
                serve(stream, &a, &log, &auth_log);
            }
        });
        Server { url, seen, auth }
    }

    pub(super) fn targets(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

fn serve(mut stream: TcpStream, a: &Canned, log: &Mutex<Vec<String>>, auth: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    if let Ok(mut l) = log.lock() {
        l.push(target);
    }
    let mut authorization = String::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && (k.eq_ignore_ascii_case("authorization")
                || k.eq_ignore_ascii_case("x-finnhub-token"))
        {
            authorization = v.trim().to_string();
        }
    }
    if let Ok(mut l) = auth.lock() {
        l.push(authorization);
    }
    if let Some(d) = a.stall {
        std::thread::sleep(d);
    }
    let mut head = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        a.status,
        a.body.len()
    );
    for (k, v) in &a.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let body = &a.body[..a.cut.unwrap_or(a.body.len()).min(a.body.len())];
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let mut rest = Vec::new();
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = reader.read_to_end(&mut rest);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The bars' dates, for daily series.
fn days_of(f: &findashpro::sources::providers::Fetched) -> Vec<String> {
    f.bars
        .ts
        .iter()
        .map(|&t| findashpro::time::format_time(t))
        .collect()
}

fn request(ticker: &str, interval: Interval, start: &str, end: &str) -> BarRequest {
    BarRequest {
        ticker: ticker.into(),
        symbol: ticker.into(),
        id: 0,
        interval,
        start: findashpro::time::parse_time(start).expect("start"),
        end: findashpro::time::parse_time(end).expect("end"),
        adjusted: false,
    }
}

/// PROVIDERS.md §1.3: SPY daily, 3 bars, stamped at the New York open (14:30Z).
const YAHOO_DAILY: &str = r#"{"chart":{"result":[{"meta":{"currency":"USD","symbol":"SPY","exchangeName":"PCX","fullExchangeName":"NYSEArca","instrumentType":"ETF","firstTradeDate":728317800,"regularMarketTime":1771621200,"hasPrePostMarketData":true,"gmtoffset":-18000,"timezone":"EST","exchangeTimezoneName":"America/New_York","regularMarketPrice":689.43,"fiftyTwoWeekHigh":697.84,"fiftyTwoWeekLow":481.8,"regularMarketDayHigh":690.0,"regularMarketDayLow":681.73,"regularMarketVolume":99309328,"longName":"State Street SPDR S&P 500 ETF Trust","shortName":"State Street SPDR S&P 500 ETF T","chartPreviousClose":681.75,"priceHint":2,"currentTradingPeriod":{"pre":{"timezone":"EST","start":1771578000,"end":1771597800,"gmtoffset":-18000},"regular":{"timezone":"EST","start":1771597800,"end":1771621200,"gmtoffset":-18000},"post":{"timezone":"EST","start":1771621200,"end":1771635600,"gmtoffset":-18000}},"dataGranularity":"1d","range":"","validRanges":["1d","5d","1mo","3mo","6mo","1y","2y","5y","10y","ytd","max"]},"timestamp":[1770993000,1771338600,1771425000],"indicators":{"quote":[{"open":[681.6900024414062,680.1400146484375,684.02001953125],"close":[681.75,682.8499755859375,686.2899780273438],"high":[686.280029296875,684.9400024414062,689.1500244140625],"volume":[96267500,81354700,73570300],"low":[677.52001953125,675.780029296875,682.8300170898438]}],"adjclose":[{"adjclose":[681.75,682.8499755859375,686.2899780273438]}]}}],"error":null}}"#;

/// PROVIDERS.md §1.3: AAPL 5-minute bars, the last one still forming (off the grid, volume 0).
const YAHOO_INTRADAY: &str = r#"{"chart":{"result":[{"meta":{"currency":"USD","symbol":"AAPL","exchangeName":"NMS","fullExchangeName":"NasdaqGS","instrumentType":"EQUITY","firstTradeDate":345479400,"regularMarketTime":1791208707,"hasPrePostMarketData":true,"gmtoffset":-14400,"timezone":"EDT","exchangeTimezoneName":"America/New_York","regularMarketPrice":333.923,"chartPreviousClose":333.69,"previousClose":333.69,"scale":3,"priceHint":2,"currentTradingPeriod":{"pre":{"timezone":"EDT","start":1791187200,"end":1791207000,"gmtoffset":-14400},"regular":{"timezone":"EDT","start":1791207000,"end":1791230400,"gmtoffset":-14400},"post":{"timezone":"EDT","start":1791230400,"end":1791244800,"gmtoffset":-14400}},"tradingPeriods":[[{"timezone":"EDT","start":1791207000,"end":1791230400,"gmtoffset":-14400}]],"dataGranularity":"5m","range":"1d"},"timestamp":[1791207000,1791207300,1791208707],"indicators":{"quote":[{"open":[332.7950134277344,336.0899963378906,333.9226989746094],"volume":[1810280,497004,0],"low":[331.6499938964844,334.7300109863281,333.9226989746094],"close":[336.0736083984375,335.3900146484375,333.9226989746094],"high":[336.19000244140625,336.1099853515625,333.9226989746094]}]}}],"error":null}}"#;

/// PROVIDERS.md §1.3: Tokyo 7203.T over the lunch break: whole bars null.
const YAHOO_TOKYO: &str = r#"{"chart":{"result":[{"meta":{"exchangeTimezoneName":"Asia/Tokyo","regularMarketTime":1791200000},"timestamp":[1791167400,1791167700,1791168000,1791171000],"indicators":{"quote":[{"open":[2888.5,null,null,2888.5],"volume":[55700,null,null,703800],"high":[2889.5,null,null,2896.5],"low":[2888.5,null,null,2888.5],"close":[2889.5,null,null,2892.5]}]}}],"error":null}}"#;

#[test]
fn yahoo_daily_bars_are_dated_by_new_york_and_adjusted_on_request() {
    let s = Server::start(vec![answer(200, YAHOO_DAILY), answer(200, YAHOO_DAILY)]);
    let cfg = ProviderConfig::new(ProviderKind::Yahoo, &s.url, None);
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let req = request("SPY", Interval::Day, "2026-02-01", "2026-02-28");
    let f = rt()
        .block_on(yahoo::fetch(&http, &cfg, &req))
        .expect("bars");
    let days = days_of(&f);
    assert_eq!(days, ["2026-02-13", "2026-02-17", "2026-02-18"]);
    assert_eq!(f.bars.close, [681.75, 682.8499755859375, 686.2899780273438]);
    assert_eq!(f.bars.volume[0], 96_267_500.0);
    assert!(f.rejects.is_empty());
    let t = &s.targets()[0];
    assert!(t.starts_with("/v8/finance/chart/SPY?"), "{t}");
    assert!(
        t.contains("interval=1d") && t.contains(&format!("period1={}", req.start)),
        "{t}"
    );
    // Adjusted: the same body scaled by adjclose / close, which is 1 on these bars.
    let adj = BarRequest {
        adjusted: true,
        ..req
    };
    let g = rt()
        .block_on(yahoo::fetch(&http, &cfg, &adj))
        .expect("bars");
    assert_eq!(g.bars.close, f.bars.close);
    assert!(s.targets()[1].contains("includeAdjustedClose=true"));
}

#[test]
fn yahoo_intraday_leaves_out_the_forming_bar_and_quarantines_null_bars() {
    let s = Server::start(vec![answer(200, YAHOO_INTRADAY), answer(200, YAHOO_TOKYO)]);
    let cfg = ProviderConfig::new(ProviderKind::Yahoo, &s.url, None);
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let req = request("AAPL", Interval::Minutes(5), "2026-10-01", "2026-10-31");
    let f = rt()
        .block_on(yahoo::fetch(&http, &cfg, &req))
        .expect("bars");
    assert_eq!(
        f.bars.ts,
        [1_791_207_000, 1_791_207_300],
        "the forming bar is left out"
    );
    assert_eq!(f.bars.open[1], 336.0899963378906);
    let tokyo = request("7203.T", Interval::Minutes(5), "2026-10-01", "2026-10-31");
    let g = rt()
        .block_on(yahoo::fetch(&http, &cfg, &tokyo))
        .expect("bars");
    assert_eq!(g.bars.ts, [1_791_167_400, 1_791_171_000]);
    assert_eq!(g.rejects.len(), 2);
    for r in &g.rejects {
        assert_eq!(r.reason.as_str(), "missing_field");
        assert!(
            r.detail.starts_with("yahoo: ")
                && r.detail.contains("null open, high, low, close, volume"),
            "{}",
            r.detail
        );
        assert_eq!(r.origin, "yahoo:7203.T");
    }
    assert!(s.targets()[1].starts_with("/v8/finance/chart/7203.T?"));
}

#[test]
fn yahoo_errors_are_told_apart() {
    let not_found = r#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;
    let too_long = r#"{"chart":{"result":null,"error":{"code":"Unprocessable Entity","description":"5m data not available for startTime=1728136756 and endTime=1791208756. The requested range must be within the last 60 days."}}}"#;
    let mut throttled = answer(429, "Edge: Too Many Requests");
    throttled.headers.push(("Retry-After".into(), "120".into()));
    let mut truncated = answer(200, YAHOO_DAILY);
    truncated.cut = Some(300);
    let s = Server::start(vec![
        answer(404, not_found),
        answer(422, too_long),
        throttled,
        answer(200, "<html><body>Will be right back...</body></html>"),
        answer(503, ""),
        truncated,
    ]);
    let cfg = ProviderConfig::new(ProviderKind::Yahoo, &s.url, None);
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let req = request("ZZZZ", Interval::Day, "2026-01-01", "2026-02-01");
    let rt = rt();
    let next = || rt.block_on(yahoo::fetch(&http, &cfg, &req));
    assert!(matches!(next(), Err(ProviderError::UnknownTicker { .. })));
    assert!(
        matches!(next(), Err(ProviderError::Refused { message, .. }) if message.contains("60 days"))
    );
    match next() {
        Err(ProviderError::Throttled {
            retry_after,
            message,
            ..
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(120)));
            assert!(message.contains("Too Many Requests"));
        }
        other => panic!("429 in plain text is a throttle: {other:?}"),
    }
    let html = next();
    assert!(
        matches!(
            &html,
            Err(ProviderError::Unavailable {
                status: Some(200),
                ..
            })
        ),
        "{html:?}"
    );
    assert!(matches!(
        next(),
        Err(ProviderError::Unavailable {
            status: Some(503),
            ..
        })
    ));
    let cut = next();
    assert!(
        matches!(&cut, Err(ProviderError::Unavailable { .. })),
        "{cut:?}"
    );
    assert!(cut.is_err_and(|e| e.retryable()));
    // A ticker that breaks the rule never reaches the server.
    let bad = request("AAPL US;rm", Interval::Day, "2026-01-01", "2026-02-01");
    assert!(matches!(
        rt.block_on(yahoo::fetch(&http, &cfg, &bad)),
        Err(ProviderError::Ticker { .. })
    ));
    assert_eq!(s.targets().len(), 6);
}

#[test]
fn a_server_that_does_not_answer_times_out_as_unavailable() {
    let slow = Canned {
        stall: Some(Duration::from_secs(3)),
        ..answer(200, YAHOO_DAILY)
    };
    let s = Server::start(vec![slow]);
    let cfg = ProviderConfig::new(ProviderKind::Yahoo, &s.url, None);
    let http = Http::new(Duration::from_millis(300)).expect("http");
    let req = request("SPY", Interval::Day, "2026-02-01", "2026-02-28");
    let e = rt().block_on(yahoo::fetch(&http, &cfg, &req));
    assert!(
        matches!(&e, Err(ProviderError::Unavailable { status: None, message, .. }) if message.contains("timed out")),
        "{e:?}"
    );
}

/// PROVIDERS.md §2.3: MSFT 1-minute bars, newest first, numbers as strings, US/Eastern times.
const AV_INTRADAY: &str = r#"{
    "Meta Data": {"1. Information": "Intraday (1min) prices and volumes", "2. Symbol": "MSFT",
        "3. Last Refreshed": "2017-12-18 14:56:00", "4. Interval": "1min", "5. Output Size": "Compact",
        "6. Time Zone": "US/Eastern"},
    "Time Series (1min)": {
        "2017-12-18 14:56:00": {"1. open": "86.4900", "2. high": "86.5000", "3. low": "86.4750", "4. close": "86.5000", "5. volume": "10494"},
        "2017-12-18 14:55:00": {"1. open": "86.4900", "2. high": "86.5000", "3. low": "86.4801", "4. close": "86.5000", "5. volume": "12682"},
        "2017-12-18 14:54:00": {"1. open": "86.4700", "2. high": "86.5100", "3. low": "86.4700", "4. close": "86.4931", "5. volume": "24345"},
        "2017-12-18 14:53:00": {"1. open": "86.4700", "2. high": "n/a", "3. low": "86.4700", "4. close": "86.4931", "5. volume": "24345"}
    }
}"#;

const AV_DAILY: &str = r#"{"Meta Data": {"1. Information": "Daily Prices (open, high, low, close) and Volumes",
    "2. Symbol": "IBM", "3. Last Refreshed": "2024-11-01", "4. Output Size": "Compact", "5. Time Zone": "US/Eastern"},
    "Time Series (Daily)": {
        "2024-11-01": {"1. open": "207.1500", "2. high": "208.8300", "3. low": "205.5900", "4. close": "208.2500", "5. volume": "4075542"},
        "2024-10-31": {"1. open": "208.5000", "2. high": "209.4500", "3. low": "206.1600", "4. close": "206.7200", "5. volume": "5294011"}}}"#;

pub(super) const KEY: &str = "AVK3Y9SECRET";

#[test]
fn alpha_vantage_series_are_sorted_parsed_from_strings_and_placed_in_utc() {
    let s = Server::start(vec![answer(200, AV_INTRADAY), answer(200, AV_DAILY)]);
    let cfg = ProviderConfig::new(ProviderKind::AlphaVantage, &s.url, Some(Secret::new(KEY)));
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let req = request("MSFT", Interval::Minutes(1), "2017-12-18", "2017-12-19");
    let f = rt()
        .block_on(alpha_vantage::fetch(&http, &cfg, &req))
        .expect("bars");
    // 14:54 New York in December is 19:54 UTC.
    let utc = |h: i64, m: i64| 1_513_555_200 + h * 3600 + m * 60;
    assert_eq!(f.bars.ts, [utc(19, 54), utc(19, 55), utc(19, 56)]);
    assert_eq!(f.bars.close, [86.4931, 86.5, 86.5]);
    assert_eq!(f.bars.volume, [24_345.0, 12_682.0, 10_494.0]);
    assert_eq!(f.rejects.len(), 1);
    assert!(
        f.rejects[0]
            .detail
            .contains("2. high = \"n/a\" is not a number")
            && f.rejects[0].detail.starts_with("alpha_vantage: "),
        "{}",
        f.rejects[0].detail
    );
    let t = &s.targets()[0];
    assert!(
        t.starts_with("/query?symbol=MSFT&apikey=") && t.contains("month=2017-12"),
        "{t}"
    );
    let daily = request("IBM", Interval::Day, "2024-10-01", "2024-11-30");
    let d = rt()
        .block_on(alpha_vantage::fetch(&http, &cfg, &daily))
        .expect("bars");
    let days = days_of(&d);
    assert_eq!(days, ["2024-10-31", "2024-11-01"]);
    assert!(s.targets()[1].contains("function=TIME_SERIES_DAILY&outputsize=compact"));
}

#[test]
fn alpha_vantage_errors_inside_200_are_told_apart_and_never_show_the_key() {
    let bodies = [
        r#"{"Error Message": "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."}"#,
        r#"{"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."}"#,
        r#"{"Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."}"#,
        r#"{"Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call frequency."}"#,
        r#"{"Information": "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium features"}"#,
        // A server echoing the request, key included.
        "<html>error for /query?apikey=AVK3Y9SECRET</html>",
        r#"{"Meta Data": {}}"#,
    ];
    let s = Server::start(bodies.iter().map(|b| answer(200, b)).collect());
    let cfg = ProviderConfig::new(ProviderKind::AlphaVantage, &s.url, Some(Secret::new(KEY)));
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let req = request("IBM", Interval::Day, "2024-10-01", "2024-11-30");
    let rt = rt();
    let got: Vec<ProviderError> = (0..bodies.len())
        .map(|_| {
            rt.block_on(alpha_vantage::fetch(&http, &cfg, &req))
                .expect_err("every body is an error")
        })
        .collect();
    assert!(
        matches!(got[0], ProviderError::UnknownTicker { .. }),
        "{:?}",
        got[0]
    );
    assert!(
        matches!(got[1], ProviderError::BadKey { .. }),
        "{:?}",
        got[1]
    );
    assert!(
        matches!(got[2], ProviderError::Throttled { .. }),
        "{:?}",
        got[2]
    );
    assert!(
        matches!(got[3], ProviderError::Throttled { .. }),
        "{:?}",
        got[3]
    );
    assert!(matches!(got[4], ProviderError::Plan { .. }), "{:?}", got[4]);
    assert!(
        matches!(got[5], ProviderError::Unavailable { .. }),
        "{:?}",
        got[5]
    );
    assert!(
        matches!(got[6], ProviderError::Unavailable { .. }),
        "{:?}",
        got[6]
    );
    let retry: Vec<bool> = got.iter().map(ProviderError::retryable).collect();
    assert_eq!(retry, [false, false, true, true, false, true, true]);
    for e in &got {
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(KEY), "the key leaked: {shown}");
    }
    assert!(format!("{}", got[5]).contains("apikey=<redacted>"));
    // No key configured: refused before any request.
    let keyless = ProviderConfig::new(ProviderKind::AlphaVantage, &s.url, None);
    let e = rt.block_on(alpha_vantage::fetch(&http, &keyless, &req));
    assert!(
        matches!(&e, Err(ProviderError::NoKey { env, .. }) if env == "ALPHA_VANTAGE"),
        "{e:?}"
    );
    assert_eq!(s.targets().len(), bodies.len());
}

#[test]
fn a_dead_port_is_unavailable_without_the_url_or_key() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cfg = ProviderConfig::new(
        ProviderKind::AlphaVantage,
        &format!("http://127.0.0.1:{port}"),
        Some(Secret::new(KEY)),
    );
    let http = Http::new(Duration::from_secs(2)).expect("http");
    let req = request("IBM", Interval::Day, "2024-10-01", "2024-11-30");
    let e = rt().block_on(alpha_vantage::fetch(&http, &cfg, &req));
    let shown = format!("{e:?}");
    assert!(
        matches!(e, Err(ProviderError::Unavailable { status: None, .. })),
        "{shown}"
    );
    assert!(!shown.contains(KEY) && !shown.contains("/query"), "{shown}");
}

/// A Redis key prefix of the test's own, removed afterwards.
pub(super) struct RedisPrefix(pub(super) String);

impl RedisPrefix {
    pub(super) fn new(name: &str) -> RedisPrefix {
        RedisPrefix(format!("fdptest:{name}:{}", std::process::id()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Ok(mut c) = findashpro::sources::redis_stream::Conn::open(&redis_url()) {
            let _ = c.delete_prefix(&self.0);
        }
    }
}

pub(super) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Most requests in any window of `len` starting at a request.
pub(super) fn busiest(times: &[std::time::Instant], len: Duration) -> usize {
    let mut t = times.to_vec();
    t.sort();
    (0..t.len())
        .map(|i| t[i..].iter().take_while(|&&u| u - t[i] < len).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn eight_clients_on_one_key_never_pass_any_limit_in_any_window() {
    use findashpro::sources::providers::limiter::{Limit, RateLimiter};
    let prefix = RedisPrefix::new("limiter");
    let limiter = RateLimiter::new(
        &prefix.0,
        "alpha_vantage",
        "key1",
        &[
            Limit {
                count: 4,
                window: Duration::from_millis(500),
            },
            Limit {
                count: 10,
                window: Duration::from_millis(2_000),
            },
        ],
    );
    let admitted = Arc::new(Mutex::new(Vec::new()));
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|w| {
            let (limiter, admitted) = (limiter.clone(), Arc::clone(&admitted));
            std::thread::spawn(move || {
                let mut c =
                    findashpro::sources::redis_stream::Conn::open(&redis_url()).expect("redis");
                let mut n = 0;
                while started.elapsed() < Duration::from_millis(3_000) {
                    n += 1;
                    if limiter
                        .try_acquire(&mut c, &format!("w{w}-{n}"))
                        .expect("limiter")
                        .is_none()
                    {
                        admitted
                            .lock()
                            .expect("lock")
                            .push(std::time::Instant::now());
                    }
                }
                n
            })
        })
        .collect();
    let tries: u64 = threads.into_iter().map(|t| t.join().expect("thread")).sum();
    let times = admitted.lock().expect("lock").clone();
    assert!(tries > 1_000, "the clients hammered the key: {tries} tries");
    assert!(
        busiest(&times, Duration::from_millis(500)) <= 4,
        "{:?}",
        times.len()
    );
    assert!(busiest(&times, Duration::from_millis(2_000)) <= 10);
    // And it did let requests through at the limit's pace: 10 per 2 s over 3 s.
    assert!(
        times.len() >= 10 && times.len() <= 20,
        "{} admitted",
        times.len()
    );
}

#[test]
fn a_retry_after_pauses_the_key_in_every_client() {
    use findashpro::sources::providers::limiter::{Limit, RateLimiter};
    let prefix = RedisPrefix::new("pause");
    let limiter = RateLimiter::new(
        &prefix.0,
        "yahoo",
        "ip",
        &[Limit {
            count: 100,
            window: Duration::from_secs(1),
        }],
    );
    let mut a = findashpro::sources::redis_stream::Conn::open(&redis_url()).expect("redis");
    let mut b = findashpro::sources::redis_stream::Conn::open(&redis_url()).expect("redis");
    assert_eq!(limiter.try_acquire(&mut a, "a1").expect("admit"), None);
    limiter
        .pause(&mut a, Duration::from_millis(600))
        .expect("pause");
    // A shorter pause does not cut a longer one short.
    limiter
        .pause(&mut b, Duration::from_millis(10))
        .expect("pause");
    let wait = limiter
        .try_acquire(&mut b, "b1")
        .expect("try")
        .expect("paused");
    assert!(wait > Duration::from_millis(400), "{wait:?}");
    let waited = limiter
        .acquire(&mut b, "b2", Duration::from_secs(5))
        .expect("admitted after the pause");
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(
        limiter.acquire(&mut a, "a2", Duration::ZERO).is_ok(),
        "no pause left"
    );
}

#[test]
fn the_breaker_opens_on_failures_lets_one_probe_through_and_closes_on_success() {
    use findashpro::sources::providers::breaker::{Admit, Breaker, BreakerState};
    let prefix = RedisPrefix::new("breaker");
    let b = Breaker::new(
        &prefix.0,
        "polygon",
        3,
        Duration::from_millis(300),
        Duration::from_secs(5),
    );
    let conn = || findashpro::sources::redis_stream::Conn::open(&redis_url()).expect("redis");
    let (mut p1, mut p2) = (conn(), conn());
    assert_eq!(
        b.allow(&mut p1).expect("allow"),
        Admit::Go(BreakerState::Closed)
    );
    assert_eq!(
        b.report(&mut p1, false).expect("report"),
        BreakerState::Closed
    );
    assert_eq!(
        b.report(&mut p2, false).expect("report"),
        BreakerState::Closed
    );
    // A success in between resets the count: failures must be consecutive.
    assert_eq!(
        b.report(&mut p1, true).expect("report"),
        BreakerState::Closed
    );
    for _ in 0..2 {
        b.report(&mut p2, false).expect("report");
    }
    assert_eq!(
        b.report(&mut p1, false).expect("report"),
        BreakerState::Open
    );
    assert_eq!(b.state(&mut p2).expect("state"), BreakerState::Open);
    let Admit::Wait(BreakerState::Open, wait) = b.allow(&mut p2).expect("allow") else {
        panic!("an open breaker refuses");
    };
    assert!(wait <= Duration::from_millis(300), "{wait:?}");
    std::thread::sleep(Duration::from_millis(320));
    // Half-open: exactly one probe, whichever client asks first.
    assert_eq!(
        b.allow(&mut p1).expect("allow"),
        Admit::Go(BreakerState::HalfOpen)
    );
    assert_eq!(b.state(&mut p2).expect("state"), BreakerState::HalfOpen);
    assert!(
        matches!(
            b.allow(&mut p2).expect("allow"),
            Admit::Wait(BreakerState::HalfOpen, _)
        ),
        "a second probe is refused while the first is in flight, and the state says half-open"
    );
    // The probe fails: open again, for a new cool-down.
    assert_eq!(
        b.report(&mut p1, false).expect("report"),
        BreakerState::Open
    );
    assert!(matches!(
        b.allow(&mut p2).expect("allow"),
        Admit::Wait(BreakerState::Open, _)
    ));
    std::thread::sleep(Duration::from_millis(320));
    assert_eq!(
        b.allow(&mut p2).expect("allow"),
        Admit::Go(BreakerState::HalfOpen)
    );
    assert_eq!(
        b.report(&mut p2, true).expect("report"),
        BreakerState::Closed
    );
    assert_eq!(
        b.allow(&mut p1).expect("allow"),
        Admit::Go(BreakerState::Closed)
    );
}

/// An Alpha Vantage daily body (PROVIDERS.md §2.3's shape) of `n` weekdays from 2024-01-02, a
/// gentle sine so an SMA crossover trades.
pub(super) fn av_daily_body(n: usize) -> String {
    let mut rows = Vec::new();
    let mut d = chrono::NaiveDate::from_ymd_opt(2024, 1, 2).expect("date");
    let mut i = 0;
    while rows.len() < n {
        if chrono::Datelike::weekday(&d).number_from_monday() <= 5 {
            let p = 100.0 + 8.0 * (f64::from(i) / 6.0).sin();
            rows.push(format!(
                "\"{d}\": {{\"1. open\": \"{p:.4}\", \"2. high\": \"{:.4}\", \"3. low\": \"{:.4}\", \"4. close\": \"{p:.4}\", \"5. volume\": \"{}\"}}",
                p + 1.0,
                p - 1.0,
                100_000 + i
            ));
            i += 1;
        }
        d = d.succ_opt().expect("next day");
    }
    rows.reverse();
    format!(
        "{{\"Meta Data\": {{\"1. Information\": \"Daily Prices (open, high, low, close) and Volumes\", \"5. Time Zone\": \"US/Eastern\"}}, \"Time Series (Daily)\": {{{}}}}}",
        rows.join(", ")
    )
}

/// A backtest over `kind = "providers"`: Yahoo answers 500s, its breaker opens after two, and
/// every ticker comes from Alpha Vantage; the key is in no output.
#[test]
fn a_backtest_fails_over_from_a_dead_provider_and_never_prints_the_key() {
    let prefix = RedisPrefix::new("failover");
    let tickers = ["AAA", "BBB", "CCC", "DDD"];
    let yahoo = Server::start((0..tickers.len()).map(|_| answer(500, "oops")).collect());
    let av = Server::start(
        (0..tickers.len())
            .map(|_| answer(200, &av_daily_body(80)))
            .collect(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("p.toml");
    std::fs::write(
        &pipeline,
        format!(
            "name = \"providers\"\n[source]\nkind = \"providers\"\ntickers = {tickers:?}\n\
             start = \"2024-01-01\"\nend = \"2024-06-30\"\nprefix = \"{}\"\nbreaker_failures = 2\n\
             breaker_cooldown_seconds = 600\ntimeout_seconds = 5\n\
             providers = [{{ name = \"yahoo\", base_url = \"{}\" }}, {{ name = \"alpha_vantage\", base_url = \"{}\", tier = \"premium\" }}]\n\
             [quality]\ncalendar = \"weekdays\"\n[[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 20\n\
             [model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_20\"\n[risk.sizing]\nkind = \"fixed_fraction\"\nfraction = 0.1\n\
             [outputs]\ndir = \"{}\"\nreport = false\n",
            prefix.0,
            yahoo.url,
            av.url,
            dir.path().join("runs").display()
        ),
    )
    .expect("pipeline");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
        .args(["backtest", &pipeline.to_string_lossy(), "--run-id", "p"])
        .env("FDP_ALPHA_VANTAGE_KEY", KEY)
        .env("REDIS_URL", redis_url())
        .env("RUST_LOG", "debug")
        .output()
        .expect("fdp runs");
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("320 bars"), "4 tickers × 80 bars: {out}");
    assert!(
        !out.contains(KEY) && !err.contains(KEY),
        "the key leaked:\n{out}{err}"
    );
    assert_eq!(
        yahoo.targets().len(),
        2,
        "the breaker opened after two failures"
    );
    let asked = av.targets();
    assert_eq!(asked.len(), 4);
    for (t, ticker) in asked.iter().zip(tickers) {
        assert!(t.contains(&format!("symbol={ticker}&")), "{t}");
    }
    assert!(
        err.contains("provider failed"),
        "the failures are logged: {err}"
    );
}

#[test]
fn a_pipeline_naming_an_unknown_provider_or_interval_is_refused_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (bad, said) in [
        (
            "providers = [{ name = \"bloomberg\" }]\ninterval = \"1d\"",
            "unknown provider `bloomberg`",
        ),
        (
            "providers = [{ name = \"yahoo\" }]\ninterval = \"fortnight\"",
            "interval \"fortnight\"",
        ),
        (
            "providers = [{ name = \"yahoo\", tier = \"gold\" }]\ninterval = \"1d\"",
            "tier `gold`",
        ),
        (
            "providers = [{ name = \"fmp\" }]\ninterval = \"1d\"",
            "`fmp` gives fundamentals, not bars",
        ),
    ] {
        let p = dir.path().join("bad.toml");
        std::fs::write(
            &p,
            format!(
                "name = \"bad\"\n[source]\nkind = \"providers\"\ntickers = [\"AAPL\"]\nstart = \"2024-01-01\"\nend = \"2024-02-01\"\n{bad}\n\
                 [[features]]\nkind = \"sma\"\nperiod = 5\n[[features]]\nkind = \"sma\"\nperiod = 20\n\
                 [model]\nkind = \"crossover\"\nfast = \"SMA_5\"\nslow = \"SMA_20\"\n"
            ),
        )
        .expect("write");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"))
            .args(["validate", &p.to_string_lossy()])
            .output()
            .expect("fdp runs");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(said) && err.contains("bad.toml:"), "{err}");
    }
}

/// PROVIDERS.md §3.3: the documented daily sample, paged: the first page's `next_url` names the
/// real host; the second page ends the series.
const POLYGON_PAGE_1: &str = r#"{"adjusted":true,"next_url":"https://api.polygon.io/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10?cursor=bGltaXQ9MiZzb3J0PWFzYw","queryCount":2,"request_id":"6a7e466379af0a71039d60cc78e72282","results":[{"c":75.0875,"h":75.15,"l":73.7975,"n":1,"o":74.06,"t":1577941200000,"v":135647456,"vw":74.6099},{"c":74.3575,"h":75.145,"l":74.125,"n":1,"o":74.2875,"t":1578027600000,"v":146535512,"vw":74.7026}],"resultsCount":2,"status":"OK","ticker":"AAPL"}"#;
const POLYGON_PAGE_2: &str = r#"{"ticker":"AAPL","queryCount":2,"resultsCount":2,"adjusted":true,"results":[{"v":95595226.0,"vw":158.6074,"o":74.5,"c":74.9,"h":75.3,"l":74.1,"t":1578286800000,"n":899965},{"o":75.0,"c":75.2,"h":75.5,"l":74.8,"t":1578373200000}],"status":"DELAYED","request_id":"5e5378d5ecaf3df794bb52e45d015d2e","count":2}"#;

#[test]
fn polygon_pages_through_next_url_on_the_configured_host_with_the_key_in_a_header() {
    use findashpro::sources::providers::polygon;
    let s = Server::start(vec![
        answer(200, POLYGON_PAGE_1),
        answer(200, POLYGON_PAGE_2),
        answer(
            200,
            r#"{"ticker":"XXXX","queryCount":0,"resultsCount":0,"adjusted":true,"status":"OK","request_id":"r","count":0}"#,
        ),
        answer(
            401,
            r#"{"status":"ERROR","request_id":"r","error":"Unknown API Key"}"#,
        ),
        answer(
            403,
            r#"{"status":"NOT_AUTHORIZED","request_id":"889c","message":"Your plan doesn't include this data timeframe. Please upgrade your plan at https://polygon.io/pricing"}"#,
        ),
        answer(
            429,
            r#"{"status":"ERROR","request_id":"r","error":"You've exceeded the maximum requests per minute, please wait or upgrade your subscription to continue. https://polygon.io/pricing"}"#,
        ),
    ]);
    let cfg = ProviderConfig::new(ProviderKind::Polygon, &s.url, Some(Secret::new(KEY)));
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let req = request("AAPL", Interval::Day, "2020-01-01", "2020-01-10");
    let rt = rt();
    let f = rt
        .block_on(polygon::fetch(&http, &cfg, &req))
        .expect("bars");
    let days = days_of(&f);
    assert_eq!(days, ["2020-01-02", "2020-01-03", "2020-01-06"]);
    assert_eq!(f.bars.close, [75.0875, 74.3575, 74.9]);
    assert_eq!(f.bars.volume[2], 95_595_226.0);
    assert_eq!(
        f.rejects.len(),
        1,
        "the bar without a volume is quarantined"
    );
    assert!(f.rejects[0].detail.contains("lacks one of o, h, l, c, v"));
    let t = s.targets();
    assert_eq!(
        t[0],
        "/v2/aggs/ticker/AAPL/range/1/day/2020-01-01/2020-01-10?adjusted=false&sort=asc&limit=50000"
    );
    assert_eq!(
        t[1],
        "/v2/aggs/ticker/AAPL/range/1/day/1578114000000/2020-01-10?cursor=bGltaXQ9MiZzb3J0PWFzYw"
    );
    let auth = s.auth.lock().expect("auth").clone();
    assert_eq!(
        auth[..2],
        [format!("Bearer {KEY}"), format!("Bearer {KEY}")]
    );
    assert!(t.iter().all(|u| !u.contains(KEY)), "the key is in no URL");
    // An unknown ticker answers 200 without results: an empty series.
    let unknown = request("XXXX", Interval::Day, "2020-01-01", "2020-01-10");
    let e = rt
        .block_on(polygon::fetch(&http, &cfg, &unknown))
        .expect("empty");
    assert_eq!(e.bars.len(), 0);
    let next = || rt.block_on(polygon::fetch(&http, &cfg, &req));
    assert!(
        matches!(next(), Err(ProviderError::BadKey { message, .. }) if message == "Unknown API Key")
    );
    assert!(
        matches!(next(), Err(ProviderError::Plan { message, .. }) if message.contains("timeframe"))
    );
    assert!(matches!(next(), Err(ProviderError::Throttled { .. })));
}

/// PROVIDERS.md §4.3: daily rows with raw and adjusted prices, and IEX intraday bars.
const TIINGO_DAILY: &str = r#"[{"date":"2015-01-02T00:00:00.000Z","close":90.44,"high":91.0,"low":89.92,"open":90.84,"volume":7255394,"adjClose":74.3979026216,"adjHigh":74.8585707493,"adjLow":73.9701393602,"adjOpen":74.7269512843,"adjVolume":7255394,"divCash":0.0,"splitFactor":1.0},{"date":"2015-01-05T00:00:00+00:00","close":90.01,"high":91.0,"low":89.85,"open":90.23,"volume":8626143,"adjClose":74.0441753093,"adjHigh":74.8585707493,"adjLow":73.9125558442,"adjOpen":74.2251520737,"adjVolume":8626143,"divCash":0.0,"splitFactor":1.0}]"#;
const TIINGO_IEX: &str = r#"[{"date":"2018-01-02T14:30:00.000Z","close":91.145,"high":91.75,"low":91.06,"open":91.75,"volume":1200.0},{"date":"2018-01-02T15:00:00.000Z","close":91.115,"high":91.305,"low":91.05,"open":91.14,"volume":900.0},{"date":"2018-01-02T15:30:00.000Z","close":91.005,"high":91.225,"low":91.005,"open":91.165}]"#;

#[test]
fn tiingo_reads_raw_or_adjusted_daily_rows_and_iex_bars_with_the_token_in_a_header() {
    use findashpro::sources::providers::tiingo;
    let s = Server::start(vec![
        answer(200, TIINGO_DAILY),
        answer(200, TIINGO_DAILY),
        answer(200, TIINGO_IEX),
        answer(404, r#"{"detail":"Error: Ticker 'ZZZZ' not found"}"#),
        answer(200, "Error: Ticker 'ZZQXQ' not found"),
        answer(
            429,
            r#"{"detail":"Error: You have run over your hourly request allocation. Please upgrade at https://api.tiingo.com/pricing to have your limits increased."}"#,
        ),
        answer(
            429,
            "Error: You have run over your hourly request allocation. Contact us at support@tiingo.com to have these lifted.",
        ),
        answer(401, r#"{"detail":"Invalid token."}"#),
        answer(502, "<html>Bad Gateway</html>"),
    ]);
    let cfg = ProviderConfig::new(ProviderKind::Tiingo, &s.url, Some(Secret::new(KEY)));
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let rt = rt();
    let raw = request("PG", Interval::Day, "2015-01-01", "2015-01-31");
    let f = rt.block_on(tiingo::fetch(&http, &cfg, &raw)).expect("raw");
    assert_eq!(days_of(&f), ["2015-01-02", "2015-01-05"]);
    assert_eq!(f.bars.close, [90.44, 90.01]);
    let adjusted = BarRequest {
        adjusted: true,
        ..raw.clone()
    };
    let g = rt
        .block_on(tiingo::fetch(&http, &cfg, &adjusted))
        .expect("adjusted");
    assert_eq!(g.bars.close, [74.3979026216, 74.0441753093]);
    assert_eq!(g.bars.open[0], 74.7269512843);
    let iex = request("PG", Interval::Minutes(30), "2018-01-02", "2018-01-03");
    let h = rt.block_on(tiingo::fetch(&http, &cfg, &iex)).expect("iex");
    assert_eq!(h.bars.ts, [1_514_903_400, 1_514_905_200]);
    assert_eq!(h.rejects.len(), 1, "the bar without volume is quarantined");
    let t = s.targets();
    assert!(
        t[0].starts_with("/tiingo/daily/PG/prices?startDate=2015-01-01&endDate=2015-01-31"),
        "{}",
        t[0]
    );
    assert!(
        t[2].starts_with("/iex/PG/prices?")
            && t[2].contains("resampleFreq=30min")
            && t[2].contains("volume"),
        "{}",
        t[2]
    );
    assert!(t.iter().all(|u| !u.contains(KEY)), "the token is in no URL");
    assert_eq!(s.auth.lock().expect("auth")[0], format!("Token {KEY}"));
    let next = || rt.block_on(tiingo::fetch(&http, &cfg, &raw));
    assert!(matches!(next(), Err(ProviderError::UnknownTicker { .. })));
    assert!(
        matches!(next(), Err(ProviderError::UnknownTicker { .. })),
        "a 200 text 'not found' too"
    );
    assert!(matches!(next(), Err(ProviderError::Throttled { .. })));
    assert!(
        matches!(next(), Err(ProviderError::Throttled { .. })),
        "a plain-text 429 too"
    );
    assert!(matches!(next(), Err(ProviderError::BadKey { .. })));
    assert!(matches!(
        next(),
        Err(ProviderError::Unavailable {
            status: Some(502),
            ..
        })
    ));
}

/// PROVIDERS.md §5.3: the documented intraday sample (newest first, strings, no offset) and a
/// forex daily body without volume.
const TWELVE_INTRADAY: &str = r#"{"meta":{"symbol":"AAPL","interval":"1min","currency":"USD","exchange_timezone":"America/New_York","exchange":"NASDAQ","mic_code":"XNAS","type":"Common Stock"},"values":[{"datetime":"2021-09-16 15:59:00","open":"148.73500","high":"148.86000","low":"148.73000","close":"148.85001","volume":"624277"},{"datetime":"2021-09-16 15:58:00","open":"148.72000","high":"148.78000","low":"148.70000","close":"148.74001","volume":"274622"},{"datetime":"2021-09-16 15:57:00","open":"148.7","high":"--","low":"148.6","close":"148.7","volume":"1"}],"status":"ok"}"#;
const TWELVE_FX_DAILY: &str = r#"{"meta":{"symbol":"EUR/USD","interval":"1day","currency_base":"Euro","currency_quote":"US Dollar","type":"Physical Currency"},"values":[{"datetime":"2024-01-03","open":"1.09210","high":"1.09290","low":"1.08920","close":"1.09200"},{"datetime":"2024-01-02","open":"1.10380","high":"1.10400","low":"1.09390","close":"1.09410"}],"status":"ok"}"#;

#[test]
fn twelve_data_reads_string_values_newest_first_and_tells_body_codes_apart() {
    use findashpro::sources::providers::twelve_data;
    let error = |code: u16, message: &str| {
        answer(
            200,
            &format!(r#"{{"code":{code},"message":"{message}","status":"error"}}"#),
        )
    };
    let s = Server::start(vec![
        answer(200, TWELVE_INTRADAY),
        answer(200, TWELVE_FX_DAILY),
        error(
            400,
            "**symbol** not found: ABC/XYZ. Please specify it correctly according to API Documentation.",
        ),
        error(401, "**apikey** parameter is incorrect or not specified."),
        error(403, "This endpoint is available on Pro plan."),
        error(
            429,
            "You have run out of API credits for the current minute. 10 API credits were used, with the current limit being 8.",
        ),
        answer(503, "<html>unavailable</html>"),
    ]);
    let cfg = ProviderConfig::new(ProviderKind::TwelveData, &s.url, Some(Secret::new(KEY)));
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let rt = rt();
    let req = request("AAPL", Interval::Minutes(1), "2021-09-16", "2021-09-17");
    let f = rt
        .block_on(twelve_data::fetch(&http, &cfg, &req))
        .expect("bars");
    // Asked in UTC: the times are the instants.
    let at = |h: i64, m: i64| 1_631_750_400 + h * 3600 + m * 60;
    assert_eq!(f.bars.ts, [at(15, 58), at(15, 59)]);
    assert_eq!(f.bars.close, [148.74001, 148.85001]);
    assert_eq!(f.bars.volume, [274_622.0, 624_277.0]);
    assert_eq!(f.rejects.len(), 1);
    assert!(
        f.rejects[0]
            .detail
            .contains("high = \"--\" is not a number"),
        "{}",
        f.rejects[0].detail
    );
    let t = s.targets();
    assert!(
        t[0].starts_with("/time_series?symbol=AAPL&interval=1min&")
            && t[0].contains("timezone=UTC"),
        "{}",
        t[0]
    );
    let fx = request("EURUSD", Interval::Day, "2024-01-01", "2024-01-05");
    let g = rt
        .block_on(twelve_data::fetch(&http, &cfg, &fx))
        .expect("fx");
    assert_eq!(days_of(&g), ["2024-01-02", "2024-01-03"]);
    assert_eq!(g.bars.close, [1.0941, 1.092]);
    assert_eq!(g.bars.volume, [0.0, 0.0], "forex has no volume to report");
    let next = || rt.block_on(twelve_data::fetch(&http, &cfg, &req));
    assert!(matches!(next(), Err(ProviderError::UnknownTicker { .. })));
    assert!(matches!(next(), Err(ProviderError::BadKey { .. })));
    assert!(matches!(next(), Err(ProviderError::Plan { .. })));
    assert!(matches!(next(), Err(ProviderError::Throttled { .. })));
    let down = next();
    assert!(
        matches!(
            &down,
            Err(ProviderError::Unavailable {
                status: Some(503),
                ..
            })
        ),
        "{down:?}"
    );
    assert!(!format!("{down:?}").contains(KEY));
}

/// PROVIDERS.md §6.3: the documented daily candles, stamped at midnight New York.
const FINNHUB_DAILY: &str = r#"{"c":[217.68,221.03,219.89],"h":[222.49,221.5,220.94],"l":[217.19,217.1402,218.83],"o":[221.03,218.55,220],"s":"ok","t":[1569297600,1569384000,1569470400],"v":[33463820,24018876,20730608]}"#;

#[test]
fn finnhub_candles_are_dated_by_new_york_and_a_free_key_is_told_it_is_premium() {
    use findashpro::sources::providers::finnhub;
    let s = Server::start(vec![
        answer(200, FINNHUB_DAILY),
        answer(200, r#"{"s":"no_data"}"#),
        answer(
            403,
            r#"{"error":"You don't have access to this resource."}"#,
        ),
        answer(
            429,
            r#"{"error":"API limit reached. Please try again later. Remaining Limit: 0"}"#,
        ),
        answer(401, r#"{"error":"Please use an API key."}"#),
        answer(
            200,
            r#"{"c":[1.0],"h":[1.0],"l":[1.0],"o":[1.0],"s":"ok","t":[1,2],"v":[1]}"#,
        ),
    ]);
    let cfg = ProviderConfig::new(ProviderKind::Finnhub, &s.url, Some(Secret::new(KEY)));
    let http = Http::new(Duration::from_secs(5)).expect("http");
    let rt = rt();
    let req = request("AAPL", Interval::Day, "2019-09-20", "2019-09-30");
    let f = rt
        .block_on(finnhub::fetch(&http, &cfg, &req))
        .expect("bars");
    assert_eq!(days_of(&f), ["2019-09-24", "2019-09-25", "2019-09-26"]);
    assert_eq!(f.bars.open, [221.03, 218.55, 220.0]);
    assert_eq!(f.bars.volume[0], 33_463_820.0);
    let t = s.targets();
    assert!(
        t[0].starts_with("/stock/candle?symbol=AAPL&resolution=D&from="),
        "{}",
        t[0]
    );
    assert!(!t[0].contains(KEY), "the key is in no URL");
    assert_eq!(
        s.auth.lock().expect("auth")[0],
        KEY,
        "the key travels in X-Finnhub-Token"
    );
    let empty = rt
        .block_on(finnhub::fetch(&http, &cfg, &req))
        .expect("no data");
    assert_eq!(empty.bars.len(), 0);
    let next = || rt.block_on(finnhub::fetch(&http, &cfg, &req));
    assert!(
        matches!(next(), Err(ProviderError::Plan { message, .. }) if message.contains("access"))
    );
    assert!(matches!(next(), Err(ProviderError::Throttled { .. })));
    assert!(matches!(next(), Err(ProviderError::BadKey { .. })));
    assert!(
        matches!(next(), Err(ProviderError::Unavailable { .. })),
        "arrays of unequal length"
    );
}
