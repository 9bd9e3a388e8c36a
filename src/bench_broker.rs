//! `fdp bench broker`: orders per second through the paper broker inside the portfolio, and
//! submit-to-acknowledgement latency through the Alpaca adapter against a loopback server that
//! answers `POST /v2/orders` with Alpaca's order body (keep-alive, as Alpaca's HTTPS does). The
//! adapter figure is this program's own cost — JSON both ways, HTTP on loopback, the client —
//! not Alpaca's.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::bar::Bar;
use crate::config::{RiskSpec, Sizing};
use crate::operators::portfolio::{OrderPolicy, Portfolio};
use crate::operators::risk::{KillSwitch, RiskEngine};
use crate::operators::signal::{Signal, Target};
use crate::order::{Commission, EntryType, OrderSide, OrderType, TimeInForce};
use crate::sinks::broker::alpaca::AlpacaConfig;
use crate::sinks::broker::alpaca::rest::AlpacaClient;
use crate::sinks::broker::venue::{OrderRequest, VenueError, client_order_id};
use crate::sinks::broker::{FillModel, PaperBroker};

/// One measured line.
#[derive(Debug, Clone)]
pub struct BrokerLine {
    /// What was measured.
    pub what: String,
    /// Orders decided (paper) or submitted (adapter).
    pub orders: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Median per-order latency (adapter only).
    pub p50: Option<Duration>,
    /// 99th percentile (adapter only).
    pub p99: Option<Duration>,
}

/// The paper broker through the portfolio: `tickers` × `bars` synthetic bars whose signal turns
/// every few bars, market orders, then limit entries with a bracket and a volume cap.
pub fn paper(tickers: usize, bars: usize) -> Vec<BrokerLine> {
    let kinds = [
        ("paper, market orders", OrderPolicy::default(), None),
        (
            "paper, limit entries + bracket + volume cap",
            OrderPolicy {
                entry: EntryType::Limit,
                offset: 0.001,
                tif: TimeInForce::Gtc,
                take_profit: Some(0.02),
                stop_loss: Some(0.01),
            },
            Some(0.01),
        ),
    ];
    kinds
        .into_iter()
        .map(|(what, policy, cap)| {
            let risk = RiskSpec {
                sizing: Sizing::FixedFraction { fraction: 0.01 },
                min_order: 0.0,
                max_positions: tickers.max(1),
                daily_loss_stop: 1.0,
                ..RiskSpec::default()
            };
            let broker = PaperBroker::new(FillModel {
                slippage: 0.0005,
                commission: Commission::rate(0.001),
                whole_shares: false,
                volume_cap: cap,
            });
            let mut p = Portfolio::with_policy(
                RiskEngine::new(risk, KillSwitch::default()),
                broker,
                policy,
            );
            let mut rows = Vec::with_capacity(tickers);
            let started = Instant::now();
            for b in 0..bars {
                rows.clear();
                let ts = 946_684_800 + b as i64 * 86_400;
                for t in 0..tickers {
                    let x = (b + t) as f64;
                    let price = 100.0 + (x * 0.3).sin() * 5.0;
                    let target = if ((b + t) / 5) % 2 == 0 {
                        Target::Long
                    } else {
                        Target::Flat
                    };
                    rows.push((
                        Bar {
                            ticker: t as u32,
                            ts,
                            open: price,
                            high: price * 1.01,
                            low: price * 0.99,
                            close: price * 1.002,
                            volume: 50_000.0,
                        },
                        Some(Signal {
                            target,
                            confidence: 0.6,
                            predicted_return: f64::NAN,
                        }),
                        1.0,
                    ));
                }
                p.step(ts, &rows);
            }
            let ledger = p.finish();
            BrokerLine {
                what: what.into(),
                orders: ledger.orders.len(),
                seconds: started.elapsed().as_secs_f64(),
                p50: None,
                p99: None,
            }
        })
        .collect()
}

/// The body Alpaca answers a new order with (order-v2.yaml's shape), for any client id.
fn order_body(n: usize) -> String {
    format!(
        r#"{{"id":"61e69015-8549-4bfd-b9c3-{n:012}","client_order_id":"c{n}","created_at":"2021-03-16T18:38:01.942282Z","updated_at":"2021-03-16T18:38:01.942282Z","submitted_at":"2021-03-16T18:38:01.937734Z","filled_at":null,"expired_at":null,"canceled_at":null,"failed_at":null,"replaced_at":null,"replaced_by":null,"replaces":null,"asset_id":"b0b6dd9d-8b9b-48a9-ba46-b9d54906e415","symbol":"AAPL","asset_class":"us_equity","notional":null,"qty":"10","filled_qty":"0","filled_avg_price":null,"order_class":"","order_type":"limit","type":"limit","side":"buy","time_in_force":"day","limit_price":"185.5","stop_price":null,"status":"accepted","extended_hours":false,"legs":null,"trail_percent":null,"trail_price":null,"hwm":null}}"#
    )
}

/// A keep-alive loopback server answering every request with a new order.
fn serve() -> std::io::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_nodelay(true);
            std::thread::spawn(move || {
                let Ok(read) = stream.try_clone() else { return };
                let mut reader = BufReader::new(read);
                let mut k = n * 1_000_000;
                loop {
                    let mut length = 0usize;
                    let mut first = true;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).map_or(true, |r| r == 0) {
                            return;
                        }
                        if h == "\r\n" && !first {
                            break;
                        }
                        first = false;
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    k += 1;
                    let b = order_body(k);
                    // One write per answer: split writes meet delayed ACKs (40 ms each).
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                        b.len()
                    );
                    if stream.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(url)
}

/// What stops the Alpaca benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchBrokerError {
    /// An order failed (the loopback server answers every one: a bug of the adapter or bench).
    #[error(transparent)]
    Venue(#[from] VenueError),
    /// The loopback server or the runtime could not start.
    #[error("{what}: {source}")]
    Io {
        /// Which.
        what: &'static str,
        /// The failure.
        source: std::io::Error,
    },
    /// A task of the bench panicked.
    #[error("task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// `orders` orders through the Alpaca adapter on `concurrent` tasks at once.
///
/// # Errors
/// The loopback server cannot start or an order fails.
pub fn alpaca(orders: usize, concurrent: usize) -> Result<BrokerLine, BenchBrokerError> {
    let url = serve().map_err(|source| BenchBrokerError::Io {
        what: "loopback server",
        source,
    })?;
    let cfg = AlpacaConfig::new(&url, "ws://127.0.0.1:9/stream", "bench", "bench", false)?;
    let client = AlpacaClient::new(cfg)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| BenchBrokerError::Io {
            what: "runtime",
            source,
        })?;
    let concurrent = concurrent.max(1);
    let (lat, seconds) = rt.block_on(async {
        let started = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..concurrent {
            let c = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for i in (w..orders).step_by(concurrent) {
                    let r = OrderRequest {
                        client_id: client_order_id("bench", i as u64),
                        symbol: "AAPL".into(),
                        side: OrderSide::Buy,
                        quantity: 10.0,
                        order_type: OrderType::Limit { limit: 185.5 },
                        tif: TimeInForce::Day,
                    };
                    let t = Instant::now();
                    c.submit(&r).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, VenueError>(lat)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        Ok::<_, BenchBrokerError>((all, started.elapsed().as_secs_f64()))
    })?;
    let mut lat = lat;
    lat.sort();
    let at = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    Ok(BrokerLine {
        what: format!("alpaca adapter, {concurrent} in flight"),
        orders: lat.len(),
        seconds,
        p50: at(0.5),
        p99: at(0.99),
    })
}

/// The lines as a table.
pub fn table(lines: &[BrokerLine]) -> String {
    let mut s = format!(
        "{:<46} {:>9} {:>12} {:>10} {:>10}\n",
        "what", "orders", "orders/s", "p50 µs", "p99 µs"
    );
    let us = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_micros().to_string());
    for l in lines {
        s.push_str(&format!(
            "{:<46} {:>9} {:>12.0} {:>10} {:>10}\n",
            l.what,
            l.orders,
            l.orders as f64 / l.seconds.max(1e-9),
            us(l.p50),
            us(l.p99)
        ));
    }
    s
}
