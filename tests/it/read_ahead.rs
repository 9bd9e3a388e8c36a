//! Reading ahead (`sources::read_ahead`) against the real Redis at `REDIS_URL`: a read sent ahead
//! answers the next read with the messages that follow, and a read of own pending messages that
//! comes instead (after a reconnect) still finds every message delivered, the read-ahead's too.

use std::time::Duration;

use findashpro::sources::redis_stream::{Conn, Keys};

use crate::common::RedisPrefix;

fn bars(c: &mut Conn, keys: &Keys, from: i64, n: i64) {
    for i in from..from + n {
        c.xadd(
            &keys.stream(),
            10_000,
            &[
                ("ticker", "EUR/USD".to_string()),
                ("ts", (1_700_000_000 + i * 60).to_string()),
                ("close", "1.0873".to_string()),
            ],
        )
        .expect("xadd");
    }
}

fn times(entries: &[findashpro::sources::redis_stream::Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e.field("ts").unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_read_sent_ahead_answers_the_next_read_in_stream_order() {
    let p = RedisPrefix::new("ahead");
    let keys = Keys::new(&p.name);
    let mut c = Conn::open(&p.url).expect("Redis answers at REDIS_URL");
    c.ensure_group(&keys).expect("group");
    bars(&mut c, &keys, 0, 5);
    let first = c.read(&keys, "c1", 2, Duration::ZERO, None).expect("read");
    assert_eq!(times(&first), ["1700000000", "1700000060"]);
    c.send_read_ahead(&keys, "c1", 2).expect("ahead");
    assert!(c.reads_ahead());
    // A second ask while one is ahead sends nothing more.
    c.send_read_ahead(&keys, "c1", 2).expect("ahead");
    let next = c.read(&keys, "c1", 2, Duration::ZERO, None).expect("read");
    assert!(!c.reads_ahead());
    assert_eq!(times(&next), ["1700000120", "1700000180"]);
    let last = c
        .read_watching(&keys, "c1", 2, Duration::from_millis(100), i64::MIN)
        .expect("read");
    assert_eq!(times(&last), ["1700000240"]);
}

#[test]
fn a_pending_read_while_one_is_ahead_finds_the_read_aheads_messages_pending() {
    let p = RedisPrefix::new("ahead_pending");
    let keys = Keys::new(&p.name);
    let mut c = Conn::open(&p.url).expect("Redis answers at REDIS_URL");
    c.ensure_group(&keys).expect("group");
    bars(&mut c, &keys, 0, 4);
    let first = c.read(&keys, "c1", 2, Duration::ZERO, None).expect("read");
    assert_eq!(first.len(), 2);
    c.send_read_ahead(&keys, "c1", 2).expect("ahead");
    let pending = c
        .read(&keys, "c1", 10, Duration::ZERO, Some("0"))
        .expect("pending");
    assert_eq!(
        times(&pending),
        ["1700000000", "1700000060", "1700000120", "1700000180"],
        "every delivered message is pending for c1, the read-ahead's too"
    );
    assert!(!c.reads_ahead());
}
