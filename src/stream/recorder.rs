//! Recording in the background. A worker hands each read's bars to its recorder — a thread with a
//! PostgreSQL connection of the pool — and feeds them to the graph at once, reading and deciding
//! while the bars are written. What keeps this crash-safe is the worker's input: it holds its time
//! at the earliest bar not yet durably recorded ([`Recorder::hold`]), so the frontier, and with it
//! every commit and acknowledgement, never passes a bar that a restart could not replay.

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::sinks::postgres::{self, DbError, StoredBar};
use crate::time::{EventTime, timely_time};

use super::StreamRunError;
use super::pg::PgSlot;

/// Recordings a worker may have handed over and not seen done before it waits for one: enough to
/// keep reading while one is written, few enough that a slow server slows the reads.
pub(super) const MAX_PENDING: usize = 4;

/// A worker's recorder thread and what it has been handed.
pub(super) struct Recorder {
    tx: Option<Sender<Job>>,
    rx: Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    /// Recordings handed over and not yet done: sequence number → earliest bar time.
    pending: BTreeMap<u64, EventTime>,
    next: u64,
}

struct Job {
    seq: u64,
    bars: Vec<StoredBar>,
}

struct Done {
    seq: u64,
    result: Result<u64, DbError>,
}

impl Recorder {
    /// Starts the thread, which records the bars of run `run_id` on `db`.
    ///
    /// # Errors
    /// The thread could not be started.
    pub(super) fn start(mut db: PgSlot, run_id: String) -> Result<Recorder, StreamRunError> {
        let (tx, jobs) = mpsc::channel::<Job>();
        let (done, rx) = mpsc::channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("fdp-record".into())
            .spawn(move || {
                for Job { seq, bars } in jobs {
                    let _span = tracing::debug_span!("record", seq, bars = bars.len()).entered();
                    let result = db.retry("record bars", |rt, c| {
                        rt.block_on(postgres::write_bars(c, &run_id, &bars))
                    });
                    let n = bars.len() as u64;
                    if done
                        .send(Done {
                            seq,
                            result: result.map(|_| n),
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .map_err(|e| StreamRunError::Worker {
                message: format!("recorder thread: {e}"),
            })?;
        Ok(Recorder {
            tx: Some(tx),
            rx,
            thread: Some(thread),
            pending: BTreeMap::new(),
            next: 0,
        })
    }

    /// Hands `bars` over to be recorded (nothing to do for none).
    pub(super) fn record(&mut self, bars: Vec<StoredBar>) -> Result<(), StreamRunError> {
        let Some(earliest) = bars.iter().map(|b| b.bar.ts).min() else {
            return Ok(());
        };
        let seq = self.next;
        self.next += 1;
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Job { seq, bars }).is_ok());
        if !sent {
            return Err(gone());
        }
        self.pending.insert(seq, earliest);
        Ok(())
    }

    /// Takes in the recordings that are done without waiting; returns the bars they recorded.
    ///
    /// # Errors
    /// A recording failed for good (PostgreSQL away past its patience, or refusing the rows).
    pub(super) fn collect(&mut self) -> Result<u64, StreamRunError> {
        let mut bars = 0;
        loop {
            match self.rx.try_recv() {
                Ok(d) => bars += self.done(d)?,
                Err(TryRecvError::Empty) => return Ok(bars),
                Err(TryRecvError::Disconnected) if self.pending.is_empty() => return Ok(bars),
                Err(TryRecvError::Disconnected) => return Err(gone()),
            }
        }
    }

    /// Waits up to `wait` for one recording to be done (at once when none is pending); returns
    /// the bars it recorded.
    ///
    /// # Errors
    /// As [`Recorder::collect`].
    pub(super) fn wait_one(&mut self, wait: Duration) -> Result<u64, StreamRunError> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        match self.rx.recv_timeout(wait) {
            Ok(d) => self.done(d),
            Err(RecvTimeoutError::Timeout) => Ok(0),
            Err(RecvTimeoutError::Disconnected) => Err(gone()),
        }
    }

    fn done(&mut self, d: Done) -> Result<u64, StreamRunError> {
        self.pending.remove(&d.seq);
        Ok(d.result?)
    }

    /// The timely time the worker's input may not pass: its earliest bar not yet recorded
    /// (`None`: every bar handed over is recorded).
    pub(super) fn hold(&self) -> Option<u64> {
        self.pending.values().min().map(|t| timely_time(*t))
    }

    /// Recordings handed over and not yet seen done.
    pub(super) fn pending(&self) -> usize {
        self.pending.len()
    }
}

impl Drop for Recorder {
    /// Lets the thread finish the recording it is on and end (a bar it did not record was not
    /// acknowledged: it is read again by the next run).
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gone() -> StreamRunError {
    StreamRunError::Worker {
        message: "the recorder thread ended".into(),
    }
}
