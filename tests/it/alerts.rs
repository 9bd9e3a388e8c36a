//! The alert sink against loopback servers speaking Telegram's Bot API, Discord's webhooks and
//! PagerDuty's Events API v2 (ALERTS.md §1–3): formats, deduplication, resolution, 429s honoured, permanent refusals given
//! up, and raising that never waits for delivery.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use findashpro::alert::{Alert, Notify, Severity};
use findashpro::sinks::alerts::{Channel, Dispatcher};

/// A sequential loopback server: each connection gets the next (status, headers, body) after
/// `stall`; records each request's target and body.
struct Api {
    url: String,
    seen: Arc<Mutex<Vec<(String, serde_json::Value, Instant)>>>,
}

fn api(answers: Vec<(u16, &'static str, &'static str)>, stall: Duration) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (stream, (status, headers, body)) in listener.incoming().zip(answers) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let target = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut buf = vec![0; len];
            let _ = reader.read_exact(&mut buf);
            let json = serde_json::from_slice(&buf).unwrap_or_default();
            if let Ok(mut l) = log.lock() {
                l.push((target, json, Instant::now()));
            }
            std::thread::sleep(stall);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
                body.len()
            );
        }
    });
    Api { url, seen }
}

const TOKEN: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";
const OK: &str = r#"{"ok":true,"result":{"message_id":5012,"date":1787000000,"chat":{"id":-1001234567890,"type":"supergroup"}}}"#;
const MESSAGE: &str = r#"{"id":"1","channel_id":"2","content":"x","timestamp":"2026-08-24T12:00:00.000Z","embeds":[]}"#;

fn alert(key: &str) -> Alert {
    Alert {
        key: key.into(),
        severity: Severity::Critical,
        title: "run live: kill switch <STOP>".into(),
        text: "BRK.B & EUR/USD: no order sent".into(),
    }
}

#[test]
fn alerts_reach_telegram_and_discord_once_per_window_and_resolve() {
    let telegram = api(
        vec![
            (
                429,
                "Retry-After: 1\r\n",
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}"#,
            ),
            (200, "", OK),
            (200, "", OK),
        ],
        Duration::ZERO,
    );
    let discord = api(
        vec![
            (
                429,
                "Retry-After: 1\r\n",
                r#"{"message":"You are being rate limited.","retry_after":0.25,"global":false}"#,
            ),
            (200, "", MESSAGE),
            (200, "", MESSAGE),
        ],
        Duration::ZERO,
    );
    let d = Dispatcher::new(
        vec![
            Channel::Telegram {
                base_url: telegram.url.clone(),
                token: TOKEN.into(),
                chat_id: "-1001234567890".into(),
                min_severity: Severity::Info,
            },
            Channel::Discord {
                url: format!("{}/api/v10/webhooks/42/WEBHOOKTOKEN", discord.url),
                min_severity: Severity::Info,
            },
        ],
        Duration::from_secs(60),
    );
    d.fire(alert("run:live:kill"));
    d.fire(alert("run:live:kill"));
    d.resolve("run:live:kill", "the kill-switch file was removed");
    d.resolve("run:live:kill", "cleared twice: nothing to say");
    d.resolve("never:fired", "nothing to say");
    assert!(d.wait_delivered(Duration::from_secs(20)), "delivered");
    let s = &d.stats;
    assert_eq!(
        s.sent.load(Ordering::Relaxed),
        4,
        "fired and resolved, on both"
    );
    assert_eq!(s.deduplicated.load(Ordering::Relaxed), 1);
    assert_eq!(s.retried.load(Ordering::Relaxed), 2, "one 429 each");
    assert_eq!(s.failed.load(Ordering::Relaxed), 0);

    let tg = telegram.seen.lock().expect("log").clone();
    assert_eq!(tg.len(), 3);
    assert_eq!(tg[1].0, format!("/bot{TOKEN}/sendMessage"));
    assert!(
        tg[1].2 - tg[0].2 >= Duration::from_millis(950),
        "Telegram's retry_after honoured"
    );
    let body = &tg[1].1;
    assert_eq!(body["chat_id"], serde_json::json!(-1001234567890_i64));
    assert_eq!(body["parse_mode"], "HTML");
    assert_eq!(
        body["text"],
        "<b>CRITICAL</b> run live: kill switch &lt;STOP&gt;\nBRK.B &amp; EUR/USD: no order sent"
    );
    assert!(tg[2].1["text"].as_str().is_some_and(
        |t| t.starts_with("<b>RESOLVED</b>") && t.contains("the kill-switch file was removed")
    ));

    let dc = discord.seen.lock().expect("log").clone();
    assert_eq!(dc.len(), 3);
    assert_eq!(dc[1].0, "/api/v10/webhooks/42/WEBHOOKTOKEN?wait=true");
    assert!(
        dc[1].2 - dc[0].2 >= Duration::from_millis(240),
        "Discord's float retry_after"
    );
    assert!(
        dc[1].2 - dc[0].2 < Duration::from_millis(900),
        "the body's wait, not the header's"
    );
    let body = &dc[1].1;
    assert_eq!(body["allowed_mentions"], serde_json::json!({"parse": []}));
    assert_eq!(body["embeds"][0]["footer"]["text"], "dedup=run:live:kill");
    assert!(
        body["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("**CRITICAL**"))
    );
    assert!(
        dc[2].1["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("**RESOLVED**"))
    );
}

#[test]
fn a_refused_alert_is_given_up_and_raising_never_waits_for_delivery() {
    let telegram = api(
        vec![
            (
                403,
                "",
                r#"{"ok":false,"error_code":403,"description":"Forbidden: bot was kicked from the supergroup chat"}"#,
            ),
            (200, "", OK),
        ],
        Duration::from_millis(700),
    );
    let d = Dispatcher::new(
        vec![Channel::Telegram {
            base_url: telegram.url.clone(),
            token: TOKEN.into(),
            chat_id: "@desk_alerts".into(),
            min_severity: Severity::Info,
        }],
        Duration::from_secs(60),
    );
    let started = Instant::now();
    d.fire(alert("a"));
    d.fire(alert("b"));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "raising took {:?}",
        started.elapsed()
    );
    assert!(d.wait_delivered(Duration::from_secs(20)));
    assert_eq!(
        d.stats.failed.load(Ordering::Relaxed),
        1,
        "403 is permanent: not retried"
    );
    assert_eq!(d.stats.sent.load(Ordering::Relaxed), 1);
    let seen = telegram.seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 2, "one request per alert");
    assert_eq!(seen[0].1["chat_id"], "@desk_alerts");
}

const PD_KEY: &str = "0123456789abcdef0123456789abcdef";
const PD_OK: &str =
    r#"{"status":"success","message":"Event processed","dedup_key":"run:live:failed"}"#;

#[test]
fn pagerduty_gets_critical_alerts_as_incidents_keyed_by_the_alert_and_resolves_them() {
    let pd = api(
        vec![
            (503, "", "<html>Service Unavailable</html>"),
            (202, "", PD_OK),
            (202, "", PD_OK),
            (
                400,
                "",
                r#"{"status":"invalid event","message":"Event object is invalid","errors":["'payload.summary' is missing or blank"]}"#,
            ),
        ],
        Duration::ZERO,
    );
    let d = Dispatcher::new(
        vec![Channel::PagerDuty {
            base_url: pd.url.clone(),
            routing_key: PD_KEY.into(),
            min_severity: Severity::Critical,
            source: "fdp-worker-1".into(),
        }],
        Duration::from_secs(60),
    );
    // A warning pages nobody, nor does its resolution.
    d.fire(Alert {
        severity: Severity::Warning,
        ..alert("run:live:dead_letter")
    });
    d.resolve("run:live:dead_letter", "cleared");
    d.fire(alert("run:live:failed"));
    d.resolve("run:live:failed", "the run restarted");
    d.fire(alert("run:live:other"));
    assert!(d.wait_delivered(Duration::from_secs(20)), "delivered");
    let s = &d.stats;
    assert_eq!(s.sent.load(Ordering::Relaxed), 2, "trigger and resolve");
    assert_eq!(s.retried.load(Ordering::Relaxed), 1, "the 503");
    assert_eq!(s.failed.load(Ordering::Relaxed), 1, "the 400 is given up");

    let seen = pd.seen.lock().expect("log").clone();
    assert_eq!(seen.len(), 4);
    assert!(seen.iter().all(|(target, _, _)| target == "/v2/enqueue"));
    let trigger = &seen[1].1;
    assert_eq!(trigger["routing_key"], PD_KEY);
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "run:live:failed");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "fdp-worker-1");
    assert_eq!(
        trigger["payload"]["summary"],
        "run live: kill switch <STOP>: BRK.B & EUR/USD: no order sent"
    );
    assert!(
        trigger["payload"]["timestamp"]
            .as_str()
            .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
    );
    assert_eq!(
        seen[2].1,
        serde_json::json!({"routing_key": PD_KEY, "event_action": "resolve", "dedup_key": "run:live:failed"})
    );
    assert_eq!(seen[3].1["dedup_key"], "run:live:other");
}

/// `[alerts]` in the pipeline chooses the channels and their severities; the secrets stay in the
/// environment. A live run whose stop file is present at the start raises its start (info), the
/// kill switch (critical) and its stop (info): a Telegram channel declared at `warning` gets the
/// kill switch alone, in the chat the file names, and the Discord webhook the environment also
/// holds gets nothing, since the file does not declare it. A declared channel without its secret
/// stops the run before anything starts, naming the variable.
#[test]
fn the_pipelines_alerts_section_picks_channels_and_severities_with_secrets_from_the_environment() {
    let telegram = api(vec![(200, "", OK); 4], Duration::ZERO);
    let discord = api(vec![(204, "", ""); 4], Duration::ZERO);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (db, client) = rt.block_on(crate::common::TestDb::new());
    drop(client);
    let keys = crate::common::RedisPrefix::new("fdptest:alertcfg");
    let (redis_url, prefix) = (keys.url.clone(), keys.name.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = dir.path().join("alerting.toml");
    std::fs::write(
        &pipeline,
        format!(
            "{}\n[alerts]\ndedup_seconds = 60\ntelegram = {{ chat_id = \"@desk\", min_severity = \"warning\" }}\n",
            crate::streaming::pipeline_toml()
        ),
    )
    .expect("pipeline written");
    std::fs::write(dir.path().join("STOP"), "").expect("STOP");
    let fdp = |token: Option<&str>, args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fdp"));
        c.args(args)
            .env("FDP_TELEGRAM_BASE_URL", &telegram.url)
            .env("FDP_TELEGRAM_CHAT_ID", "-999")
            .env(
                "FDP_DISCORD_WEBHOOK_URL",
                format!("{}/api/webhooks/1/HOOKTOKEN", discord.url),
            )
            .env_remove("FDP_TELEGRAM_TOKEN")
            .env_remove("FDP_PAGERDUTY_ROUTING_KEY");
        if let Some(t) = token {
            c.env("FDP_TELEGRAM_TOKEN", t);
        }
        c.output().expect("fdp runs")
    };
    let path = pipeline.display().to_string();
    let data = dir.path().display().to_string();
    let run_args = [
        "run",
        path.as_str(),
        "--run-id",
        "alerting",
        "--database-url",
        db.url.as_str(),
        "--redis-url",
        redis_url.as_str(),
        "--prefix",
        prefix.as_str(),
        "--data-dir",
        data.as_str(),
    ];
    let refused = fdp(None, &run_args);
    assert_eq!(refused.status.code(), Some(2), "an input error");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("FDP_TELEGRAM_TOKEN"), "{said}");
    let refused = fdp(None, &["validate", "--file-only", path.as_str()]);
    assert_eq!(refused.status.code(), Some(2));

    let out = fdp(Some(TOKEN), &run_args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = telegram.seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (target, body, _) = &seen[0];
    assert_eq!(target, &format!("/bot{TOKEN}/sendMessage"));
    assert_eq!(body["chat_id"], "@desk");
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|t| t.contains("kill switch")),
        "{body}"
    );
    assert!(discord.seen.lock().expect("seen").is_empty());
}
