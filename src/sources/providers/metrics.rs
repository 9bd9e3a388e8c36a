//! What this process's provider requests did, for Prometheus: requests by provider and outcome,
//! credits and money spent, time waited on the rate limiter, cache hits and misses, and each
//! breaker's state as last seen. Process-wide, like the HTTP slots: every source of the process
//! adds to the same counters, which the metrics endpoint renders with the stream's.
//!
//! Also the process's cap on requests in flight ([`Slots`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use super::breaker::BreakerState;
use crate::sinks::prometheus::family;

#[derive(Debug, Default)]
struct Registry {
    requests: BTreeMap<(&'static str, &'static str), u64>,
    credits: BTreeMap<&'static str, u64>,
    spend: BTreeMap<&'static str, f64>,
    limiter_wait: BTreeMap<&'static str, (u64, f64)>,
    cache: BTreeMap<(&'static str, &'static str), u64>,
    breaker: BTreeMap<&'static str, BreakerState>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn registry() -> MutexGuard<'static, Registry> {
    // A panic elsewhere while counting leaves counts that are still counts.
    REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts a request's outcome: `ok`, `throttled`, `unavailable`, `refused` (plan, key, ticker),
/// `skipped_breaker`, `skipped_budget`, `skipped_limiter`.
pub fn request(provider: &'static str, outcome: &'static str) {
    *registry().requests.entry((provider, outcome)).or_default() += 1;
}

/// Counts what a request spent.
pub fn spent(provider: &'static str, credits: u32, money: f64) {
    let mut r = registry();
    *r.credits.entry(provider).or_default() += u64::from(credits);
    *r.spend.entry(provider).or_default() += money;
}

/// Counts a wait for the rate limiter.
pub fn limiter_waited(provider: &'static str, waited: Duration) {
    let mut r = registry();
    let e = r.limiter_wait.entry(provider).or_default();
    e.0 += 1;
    e.1 += waited.as_secs_f64();
}

/// Counts a cache lookup.
pub fn cache(provider: &'static str, hit: bool) {
    *registry()
        .cache
        .entry((provider, if hit { "hit" } else { "miss" }))
        .or_default() += 1;
}

/// Records a breaker's state as this process last saw it.
pub fn breaker(provider: &'static str, state: BreakerState) {
    registry().breaker.insert(provider, state);
}

/// The provider families in the Prometheus text format (empty when no provider was asked).
pub fn render() -> String {
    let r = registry();
    let mut out = String::new();
    if !r.requests.is_empty() {
        let name = "fdp_provider_requests_total";
        family(&mut out, name, "counter", "Provider requests by outcome.");
        for ((p, o), n) in &r.requests {
            out.push_str(&format!("{name}{{provider=\"{p}\",outcome=\"{o}\"}} {n}\n"));
        }
    }
    if !r.credits.is_empty() {
        let name = "fdp_provider_credits_total";
        family(&mut out, name, "counter", "Provider credits spent.");
        for (p, n) in &r.credits {
            out.push_str(&format!("{name}{{provider=\"{p}\"}} {n}\n"));
        }
        let name = "fdp_provider_spend_total";
        family(
            &mut out,
            name,
            "counter",
            "Money spent on provider requests.",
        );
        for (p, v) in &r.spend {
            out.push_str(&format!("{name}{{provider=\"{p}\"}} {v}\n"));
        }
    }
    if !r.limiter_wait.is_empty() {
        let name = "fdp_provider_limiter_wait_seconds";
        family(
            &mut out,
            name,
            "summary",
            "Time requests waited for the rate limiter.",
        );
        for (p, (n, s)) in &r.limiter_wait {
            out.push_str(&format!(
                "{name}_sum{{provider=\"{p}\"}} {s}\n{name}_count{{provider=\"{p}\"}} {n}\n"
            ));
        }
    }
    if !r.cache.is_empty() {
        let name = "fdp_provider_cache_lookups_total";
        family(
            &mut out,
            name,
            "counter",
            "Response cache lookups by result.",
        );
        for ((p, res), n) in &r.cache {
            out.push_str(&format!(
                "{name}{{provider=\"{p}\",result=\"{res}\"}} {n}\n"
            ));
        }
    }
    if !r.breaker.is_empty() {
        let name = "fdp_provider_breaker_state";
        family(
            &mut out,
            name,
            "gauge",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
        );
        for (p, s) in &r.breaker {
            out.push_str(&format!("{name}{{provider=\"{p}\"}} {}\n", s.gauge()));
        }
    }
    out
}

/// The process's cap on provider requests in flight: every source of the process under one
/// Redis prefix (one pipeline) takes a slot for each request, from any thread, and waits while
/// all are taken.
#[derive(Debug)]
pub struct Slots {
    state: Mutex<(usize, usize)>,
    freed: Condvar,
}

/// A taken slot, given back when dropped.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

static SLOTS: LazyLock<Mutex<HashMap<String, Arc<Slots>>>> = LazyLock::new(Mutex::default);

impl Slots {
    /// The process's slots for the pipeline under `prefix`, `capacity` of them (at least 1; the
    /// last source opened decides).
    pub fn process(prefix: &str, capacity: usize) -> Arc<Slots> {
        let mut all = SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slots = all.entry(prefix.to_string()).or_insert_with(|| {
            Arc::new(Slots {
                state: Mutex::new((0, 1)),
                freed: Condvar::new(),
            })
        });
        slots.lock().1 = capacity.max(1);
        slots.freed.notify_all();
        Arc::clone(slots)
    }

    fn lock(&self) -> MutexGuard<'_, (usize, usize)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot, waiting while every slot is taken.
    pub fn take(self: &Arc<Self>) -> Slot {
        let mut s = self.lock();
        while s.0 >= s.1 {
            s = self
                .freed
                .wait(s)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        s.0 += 1;
        Slot(Arc::clone(self))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.lock().0 -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_the_capacity_is_in_flight() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let slots = Slots::process("unit-slots", 2);
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (slots, now, most) = (Arc::clone(&slots), Arc::clone(&now), Arc::clone(&most));
                std::thread::spawn(move || {
                    let _slot = slots.take();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn families_render_with_labels() {
        request("yahoo", "ok");
        cache("yahoo", true);
        breaker("yahoo", BreakerState::Open);
        let text = render();
        assert!(text.contains("fdp_provider_requests_total{provider=\"yahoo\",outcome=\"ok\"}"));
        assert!(text.contains("fdp_provider_breaker_state{provider=\"yahoo\"} 2"));
        assert!(text.contains("result=\"hit\""));
    }
}
