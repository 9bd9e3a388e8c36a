//! Waking the stream's readers when the floor rises (`sources::wake`), against the real Redis at
//! `REDIS_URL`: a raise ends another reader's wait, a reader whose view of the floor is already
//! stale does not wait at all, and a server that refuses `CLIENT` commands to the run's user
//! costs the wake, never the read or the raise.

use std::time::{Duration, Instant};

use findashpro::sources::redis_stream::{Conn, Keys};

use crate::common::{RedisPrefix, unique};

/// A wait no test should sit out: a read that ends well before it was ended by something else.
const LONG: Duration = Duration::from_secs(30);

fn open(p: &RedisPrefix) -> (Keys, Conn) {
    let keys = Keys::new(&p.name);
    let mut c = Conn::open(&p.url).expect("Redis answers at REDIS_URL");
    c.ensure_group(&keys).expect("group");
    (keys, c)
}

/// Waits until `consumer`'s reader connection is registered and blocked in its read.
fn until_blocked(c: &mut Conn, keys: &Keys, consumer: &str) {
    let deadline = Instant::now() + LONG;
    loop {
        let id: Option<i64> = c
            .query(redis::cmd("HGET").arg(keys.readers()).arg(consumer))
            .expect("HGET");
        if let Some(id) = id {
            let list: String = c
                .query(redis::cmd("CLIENT").arg("LIST").arg("ID").arg(id))
                .expect("CLIENT LIST");
            let blocked = list
                .split_whitespace()
                .any(|f| f.strip_prefix("flags=").is_some_and(|f| f.contains('b')));
            if blocked {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{consumer} never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts `consumer` reading with the floor seen at `seen`; answers (entries, time waited).
fn reader(
    p: &RedisPrefix,
    keys: &Keys,
    consumer: &'static str,
    seen: i64,
) -> std::thread::JoinHandle<(usize, Duration)> {
    let (url, keys) = (p.url.clone(), keys.clone());
    std::thread::spawn(move || {
        let mut c = Conn::open(&url).expect("redis");
        let started = Instant::now();
        let got = c
            .read_watching(&keys, consumer, 10, LONG, seen)
            .expect("read");
        (got.len(), started.elapsed())
    })
}

#[test]
fn a_raised_floor_ends_another_readers_wait_and_an_unchanged_one_does_not() {
    let p = RedisPrefix::new("wake_raise");
    let (keys, mut raiser) = open(&p);
    raiser.raise_floor(&keys, 1_700_000_000).expect("raise");
    let r = reader(&p, &keys, "c1", 1_700_000_000);
    until_blocked(&mut raiser, &keys, "c1");
    // The same floor again is no raise: the reader keeps waiting.
    raiser.raise_floor(&keys, 1_700_000_000).expect("raise");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !r.is_finished(),
        "a floor that did not rise woke the reader"
    );
    raiser.raise_floor(&keys, 1_700_086_400).expect("raise");
    let (n, waited) = r.join().expect("reader");
    assert_eq!(n, 0, "nothing was in the stream");
    assert!(
        waited < LONG / 2,
        "the raise did not end the wait: {waited:?}"
    );
    let floor = raiser.floor(&keys).expect("floor");
    assert_eq!(floor, 1_700_086_400);
    raiser.forget_reader(&keys, "c1").expect("forget");
    let left: Option<i64> = raiser
        .query(redis::cmd("HGET").arg(keys.readers()).arg("c1"))
        .expect("HGET");
    assert_eq!(left, None, "a reader that ended stays registered");
}

#[test]
fn a_reader_whose_floor_is_stale_does_not_wait() {
    let p = RedisPrefix::new("wake_stale");
    let (keys, mut raiser) = open(&p);
    // The floor rose after the reader last looked (it saw an earlier day).
    raiser.raise_floor(&keys, 1_700_086_400).expect("raise");
    let (n, waited) = reader(&p, &keys, "c1", 1_700_000_000)
        .join()
        .expect("reader");
    assert_eq!(n, 0);
    assert!(waited < LONG / 2, "a stale reader waited: {waited:?}");
    // A message that comes during a wait is read as ever.
    let r = reader(&p, &keys, "c2", 1_700_086_400);
    until_blocked(&mut raiser, &keys, "c2");
    raiser
        .xadd(
            &keys.stream(),
            1000,
            &[
                ("ticker", "BRK.B"),
                ("ts", "1700172800"),
                ("close", "412.5"),
            ],
        )
        .expect("xadd");
    let (n, _) = r.join().expect("reader");
    assert_eq!(n, 1);
}

/// Removes the ACL user when the test ends, passed or not.
struct AclUser {
    name: String,
    url: String,
}

impl Drop for AclUser {
    fn drop(&mut self) {
        if let Ok(mut c) = Conn::open(&self.url) {
            let _ = c.query::<i64>(redis::cmd("ACL").arg("DELUSER").arg(&self.name));
        }
    }
}

#[test]
fn without_client_commands_reads_wait_as_before_and_raises_still_raise() {
    let p = RedisPrefix::new("wake_acl");
    let (keys, mut admin) = open(&p);
    let user = AclUser {
        name: unique("fdp_noclient"),
        url: p.url.clone(),
    };
    admin
        .query::<String>(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&user.name)
                .arg("on")
                .arg("nopass")
                .arg("~*")
                .arg("&*")
                .arg("+@all")
                .arg("-client"),
        )
        .expect("ACL SETUSER");
    let url = match p.url.strip_prefix("redis://") {
        Some(rest) => format!(
            "redis://{}:x@{}",
            user.name,
            rest.rsplit('@').next().unwrap_or(rest)
        ),
        None => panic!("REDIS_URL is not redis://: {}", p.url),
    };
    let mut limited = Conn::open(&url).expect("the limited user connects");
    limited.raise_floor(&keys, 1_700_000_000).expect("a raise");
    let started = Instant::now();
    let got = limited
        .read_watching(&keys, "c1", 10, Duration::from_millis(300), 1_700_000_000)
        .expect("a plain read");
    assert!(got.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "the read did not wait: {:?}",
        started.elapsed()
    );
    let readers: Vec<String> = admin
        .query(redis::cmd("HKEYS").arg(keys.readers()))
        .expect("HKEYS");
    assert!(
        readers.is_empty(),
        "registered without CLIENT ID: {readers:?}"
    );
    // Another reader to wake: the limited user's CLIENT UNBLOCK is refused, and the raise stands.
    admin
        .query::<i64>(
            redis::cmd("HSET")
                .arg(keys.readers())
                .arg("c2")
                .arg(i64::MAX),
        )
        .expect("HSET");
    limited.raise_floor(&keys, 1_700_086_400).expect("a raise");
    assert_eq!(admin.floor(&keys).expect("floor"), 1_700_086_400);
    limited.raise_floor(&keys, 1_700_172_800).expect("a raise");
    assert_eq!(admin.floor(&keys).expect("floor"), 1_700_172_800);
}
