//! The Alpaca adapter against a local Alpaca ([`crate::alpaca_mock`]) speaking its documented
//! wire format: an order's life (accepted, partial fill, fill), refusals with the broker's
//! reason, cancel, a fill while the trade-updates stream was down reported once after the
//! reconnection, garbage frames, 5xx, timeouts and rate limits that never send an order twice,
//! bad keys, and the live host refused without `live`.

use std::time::Duration;

use findashpro::order::{OrderSide, OrderType, TimeInForce};
use findashpro::sinks::broker::alpaca::link::AlpacaLink;
use findashpro::sinks::broker::alpaca::{AlpacaConfig, LIVE_URL, PAPER_STREAM_URL};
use findashpro::sinks::broker::venue::{
    OrderRequest, VenueError, VenueEvent, VenueStatus, client_order_id,
};
use serde_json::json;

use crate::alpaca_mock::{Fault, KEY, MockAlpaca, SECRET};

fn config(m: &MockAlpaca) -> AlpacaConfig {
    let mut c = AlpacaConfig::new(&m.url, &m.stream_url, KEY, SECRET, false).expect("config");
    c.timeout = Duration::from_millis(400);
    c.backoff = Duration::from_millis(50);
    c.max_backoff = Duration::from_millis(200);
    c.ping_every = Duration::from_millis(500);
    c
}

fn request(n: u64, symbol: &str, order_type: OrderType) -> OrderRequest {
    OrderRequest {
        client_id: client_order_id("alpaca-test", n),
        symbol: symbol.into(),
        side: OrderSide::Buy,
        quantity: 100.0,
        order_type,
        tif: TimeInForce::Day,
    }
}

const WAIT: Duration = Duration::from_secs(5);

async fn fills_and_ends(link: &mut AlpacaLink, n: usize) -> Vec<VenueEvent> {
    let mut out = Vec::new();
    while out.len() < n {
        match link.next_event(WAIT).await {
            Some(e) => out.push(e),
            None => panic!("only {} of {n} events: {out:?}", out.len()),
        }
    }
    out
}

#[tokio::test]
async fn an_orders_life_accepted_partly_filled_then_filled() {
    let m = MockAlpaca::start().await;
    let mut link = AlpacaLink::start(config(&m)).expect("link");
    m.wait_sessions(1).await;
    let r = request(1, "BRK.B", OrderType::Limit { limit: 410.25 });
    let o = link.submit(&r).await.expect("submitted");
    assert_eq!((o.status.clone(), o.filled), (VenueStatus::Open, 0.0));
    assert_eq!(
        m.posts()[0],
        json!({"symbol": "BRK.B", "qty": "100", "side": "buy", "type": "limit",
               "time_in_force": "day", "limit_price": "410.25", "client_order_id": r.client_id}),
        "decimals go as strings"
    );
    m.fill(&r.client_id, 40.0, 410.2, true, true);
    m.fill(&r.client_id, 60.0, 410.25, true, false);
    let ev = fills_and_ends(&mut link, 3).await;
    let VenueEvent::Fill(a) = &ev[0] else {
        panic!("{ev:?}")
    };
    let VenueEvent::Fill(b) = &ev[1] else {
        panic!("{ev:?}")
    };
    assert_eq!((a.quantity, a.price, a.cumulative), (40.0, 410.2, 40.0));
    assert_eq!((b.quantity, b.price, b.cumulative), (60.0, 410.25, 100.0));
    // 2026-01-05T10:30:00-05:00 is 15:30 UTC.
    assert_eq!(a.ts, 1_767_627_000);
    assert_eq!(
        ev[2],
        VenueEvent::Ended {
            client_id: r.client_id.clone(),
            status: VenueStatus::Filled
        }
    );
    let acct = link.client().account().await.expect("account");
    assert_eq!((acct.number.as_str(), acct.cash), ("010203ABCD", -23140.2));
    assert!(link.client().clock().await.expect("clock").is_open);
}

#[tokio::test]
async fn refusals_carry_the_brokers_reason_and_cancel_ends_an_order() {
    let m = MockAlpaca::start().await;
    let mut link = AlpacaLink::start(config(&m)).expect("link");
    m.wait_sessions(1).await;
    m.fault(Fault::Status(
        403,
        r#"{"buying_power":"176531.28","code":40310000,"cost_basis":"48640000","message":"insufficient buying power"}"#,
    ));
    let e = link
        .submit(&request(1, "AAPL", OrderType::Market))
        .await
        .expect_err("refused");
    assert!(
        matches!(&e, VenueError::Rejected { status: 403, reason, .. } if reason == "insufficient buying power"),
        "{e}"
    );
    m.fault(Fault::Status(
        403,
        r#"{"code":40310000,"message":"trade denied due to pattern day trading protection"}"#,
    ));
    let e = link
        .submit(&request(2, "AAPL", OrderType::Market))
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("pattern day trading"), "{e}");
    assert_eq!(
        m.orders().len(),
        0,
        "a refusal creates nothing and is not retried"
    );
    let r = request(3, "AAPL", OrderType::Stop { stop: 190.0 });
    let o = link.submit(&r).await.expect("submitted");
    link.client().cancel(&o.id).await.expect("cancel accepted");
    m.announce_cancel(&r.client_id);
    let ev = fills_and_ends(&mut link, 1).await;
    assert_eq!(
        ev[0],
        VenueEvent::Ended {
            client_id: r.client_id.clone(),
            status: VenueStatus::Cancelled
        }
    );
    let again = link
        .client()
        .cancel(&o.id)
        .await
        .expect_err("not cancelable");
    assert!(
        matches!(again, VenueError::Rejected { status: 422, .. }),
        "{again}"
    );
    let none = link
        .client()
        .cancel("no-such-id")
        .await
        .expect_err("unknown");
    assert!(matches!(none, VenueError::NotFound { .. }));
}

#[tokio::test]
async fn a_fill_while_the_stream_was_down_is_reported_once_after_the_reconnection() {
    let m = MockAlpaca::start().await;
    let mut link = AlpacaLink::start(config(&m)).expect("link");
    m.wait_sessions(1).await;
    let r = request(1, "BTC/USD", OrderType::Market);
    link.submit(&r).await.expect("submitted");
    m.garbage();
    m.fill(&r.client_id, 30.0, 43_000.5, true, true);
    let first = fills_and_ends(&mut link, 1).await;
    assert!(matches!(&first[0], VenueEvent::Fill(f) if f.quantity == 30.0));
    m.drop_streams();
    // The rest fills while nobody listens.
    m.fill(&r.client_id, 70.0, 43_010.0, false, false);
    m.wait_sessions(2).await;
    let ev = fills_and_ends(&mut link, 2).await;
    let VenueEvent::Fill(f) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(f.quantity, 70.0);
    assert!(
        (f.price - 43_010.0).abs() < 1e-6,
        "priced from the averages: {}",
        f.price
    );
    assert!(matches!(
        &ev[1],
        VenueEvent::Ended {
            status: VenueStatus::Filled,
            ..
        }
    ));
    // A late update of the same execution adds nothing.
    m.fill(&r.client_id, 0.0, 43_010.0, true, false);
    assert_eq!(link.next_event(Duration::from_millis(300)).await, None);
    assert!(
        link.stats()
            .garbage
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test]
async fn errors_timeouts_and_rate_limits_never_send_an_order_twice() {
    let m = MockAlpaca::start().await;
    let link = AlpacaLink::start(config(&m)).expect("link");
    // A 500 creates nothing: looked up (404), sent again with the same id.
    m.fault(Fault::Status(500, "internal error"));
    let a = request(1, "EUR/USD", OrderType::Limit { limit: 1.085 });
    link.submit(&a).await.expect("second attempt");
    // Accepted, but the answer comes after the client gave up: found by its id, not resent.
    m.fault(Fault::AcceptThenStall(Duration::from_secs(2)));
    let b = request(2, "EUR/USD", OrderType::Market);
    let o = link.submit(&b).await.expect("adopted");
    assert_eq!(o.client_id, b.client_id);
    // A rate limit waits for its reset, then sends.
    m.fault(Fault::RateLimit);
    let c = request(3, "EUR/USD", OrderType::Market);
    link.submit(&c).await.expect("after the reset");
    // A replay of an order already sent (a restarted run) is refused as a duplicate and adopted.
    let again = link.submit(&b).await.expect("adopted again");
    assert_eq!(again.id, o.id);
    let orders = m.orders();
    for r in [&a, &b, &c] {
        let n = orders
            .iter()
            .filter(|o| o["client_order_id"] == r.client_id.as_str())
            .count();
        assert_eq!(n, 1, "{} exists once", r.client_id);
    }
    assert_eq!(
        m.posts().len(),
        6,
        "500 + retry, stalled, 429 + retry, duplicate"
    );
    // Every retry waited for the order's lookup; nothing was sent a third time.
}

#[tokio::test]
async fn bad_keys_and_the_live_host() {
    let m = MockAlpaca::start().await;
    let mut c = config(&m);
    c.secret = "wrong".into();
    let link = AlpacaLink::start(c).expect("link");
    let e = link.client().positions().await.expect_err("unauthorized");
    assert!(matches!(e, VenueError::Unauthorized { .. }), "{e}");
    assert!(
        !e.to_string().contains("wrong"),
        "the secret is never in an error"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(m.sessions(), 0, "the stream refuses bad keys");
    let refused = AlpacaConfig::new(LIVE_URL, PAPER_STREAM_URL, KEY, SECRET, false);
    assert!(matches!(refused, Err(VenueError::NotLive { .. })));
    assert!(refused.is_err_and(|e| e.to_string().contains("live = true")));
    assert!(AlpacaConfig::new(LIVE_URL, PAPER_STREAM_URL, KEY, SECRET, true).is_ok());
    assert!(!format!("{:?}", config(&m)).contains(SECRET));
    m.set_positions(vec![
        json!({"symbol": "AAPL", "qty": "-5", "avg_entry_price": 100, "side": "short"}),
    ]);
    let link = AlpacaLink::start(config(&m)).expect("link");
    let p = link.client().positions().await.expect("positions");
    assert_eq!((p[0].quantity, p[0].avg_price), (-5.0, 100.0));
}
