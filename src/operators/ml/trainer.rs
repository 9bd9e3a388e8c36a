//! The training pool of live runs: a few threads that train models off the hot path, so a worker
//! keeps predicting with the last model while the next one is fitted.
//!
//! The pool is one per process, created on first use, with one thread per available core less
//! one (at least one), each at the back of a shared queue. A job's result comes back on its own
//! channel, which the ticker polls on each bar.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};

type Task = Box<dyn FnOnce() + Send>;

fn queue() -> &'static Mutex<Sender<Task>> {
    static POOL: OnceLock<Mutex<Sender<Task>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = channel::<Task>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1);
        for i in 0..threads {
            let rx = std::sync::Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("fdp-train-{i}"))
                .spawn(move || {
                    loop {
                        // Hold the lock only to take a task, not while running it.
                        let task = match rx.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match task {
                            Ok(t) => t(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a training thread");
            }
        }
        Mutex::new(tx)
    })
}

/// Runs `f` on the pool; its result arrives on the returned channel. If the pool cannot take it
/// (no thread could start), `f` runs here and now, so a result always arrives.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = channel();
    let task: Task = Box::new(move || {
        let _ = tx.send(f());
    });
    let refused = match queue().lock() {
        Ok(q) => q.send(task).err().map(|e| e.0),
        Err(_) => Some(task),
    };
    if let Some(task) = refused {
        task();
    }
    rx
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_back_on_their_own_channels() {
        let rxs: Vec<_> = (0..8u64).map(|i| super::spawn(move || i * i)).collect();
        let got: Vec<u64> = rxs
            .into_iter()
            .map(|r| r.recv().unwrap_or(u64::MAX))
            .collect();
        assert_eq!(got, vec![0, 1, 4, 9, 16, 25, 36, 49]);
    }
}
