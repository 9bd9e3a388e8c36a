//! Feature cache: per ticker, the kernels' state after its last bar and every computed row, keyed
//! by (ticker, feature set, last bar), so a repeated run or a restart does not recompute.
//!
//! A run serves cached rows while its bars are the cached ones (same time and the same bits,
//! checked bar by bar with a hash); at the first bar that differs it rebuilds the kernels from the
//! bars seen so far and computes from there, and a bar past the cached ones continues from the
//! cached state. A corrupt or unreadable entry is recomputed, never trusted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bar::Bar;

use super::indicators::{FeatureSet, FeatureSpec};

/// What the cache holds for one ticker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Kernel state after the last cached bar.
    pub state: FeatureSet,
    /// Values per row.
    pub width: usize,
    /// Bar times, ascending.
    pub ts: Vec<i64>,
    /// Bar hashes ([`bar_hash`]).
    pub hashes: Vec<u64>,
    /// Rows, `ts.len() * width` values.
    pub rows: Vec<f64>,
}

/// A cache directory for one feature set.
#[derive(Debug, Clone)]
pub struct FeatureCache {
    dir: PathBuf,
}

/// FNV-1a over bytes: a stable hash (the same in every process and version of Rust).
fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Hash of a bar's time and values (bit for bit).
pub fn bar_hash(b: &Bar) -> u64 {
    let words = [
        b.ts as u64,
        b.open.to_bits(),
        b.high.to_bits(),
        b.low.to_bits(),
        b.close.to_bits(),
        b.volume.to_bits(),
    ];
    fnv(words.iter().flat_map(|w| w.to_le_bytes()))
}

impl FeatureCache {
    /// The cache of `specs` under `base` (a folder per feature set, named by its hash).
    pub fn new(base: &Path, specs: &[FeatureSpec]) -> Self {
        let key = fnv(format!("state v{} {specs:?}", FeatureSet::STATE_VERSION).into_bytes());
        FeatureCache {
            dir: base.join(format!("{key:016x}")),
        }
    }

    fn path(&self, ticker: &str) -> PathBuf {
        let safe: String = ticker
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.bin"))
    }

    /// The entry of `ticker`, if there is a readable one.
    pub fn load(&self, ticker: &str) -> Option<Entry> {
        let path = self.path(ticker);
        let bytes = std::fs::read(&path).ok()?;
        match bincode::deserialize::<Entry>(&bytes) {
            Ok(e) if e.ts.len() == e.hashes.len() && e.rows.len() == e.ts.len() * e.width => {
                Some(e)
            }
            Ok(_) | Err(_) => {
                tracing::warn!(path = %path.display(), "feature cache entry unreadable; recomputing");
                None
            }
        }
    }

    /// Writes the entry of `ticker` (through a temporary file, so a crash leaves the old one).
    ///
    /// # Errors
    /// File system or encoding failures.
    pub fn store(&self, ticker: &str, entry: &Entry) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = bincode::serialize(entry).map_err(std::io::Error::other)?;
        let path = self.path(ticker);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(tmp, path)
    }
}

/// One ticker's features with the cache in front of the kernels.
#[derive(Debug)]
pub struct CachedTicker {
    specs: Vec<FeatureSpec>,
    set: FeatureSet,
    cached: Option<Entry>,
    served: usize,
    seen: Vec<super::indicators::Ohlcv>,
    ts: Vec<i64>,
    hashes: Vec<u64>,
    rows: Vec<f64>,
    /// Rows taken from the cache.
    pub hits: u64,
    /// Rows computed.
    pub computed: u64,
}

impl CachedTicker {
    /// A ticker with its cache entry, if any.
    pub fn new(specs: &[FeatureSpec], cached: Option<Entry>) -> Self {
        let set = FeatureSet::new(specs);
        let cached = cached.filter(|e| e.width == set.width());
        CachedTicker {
            specs: specs.to_vec(),
            set,
            cached,
            served: 0,
            seen: Vec::new(),
            ts: Vec::new(),
            hashes: Vec::new(),
            rows: Vec::new(),
            hits: 0,
            computed: 0,
        }
    }

    /// The row of `bar` (served or computed) into `out`.
    pub fn update(&mut self, bar: &Bar, out: &mut [f64]) {
        let x = super::indicators::Ohlcv {
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        };
        let h = bar_hash(bar);
        if let Some(e) = &self.cached {
            let i = self.served;
            if i < e.ts.len() && e.ts[i] == bar.ts && e.hashes[i] == h {
                out.copy_from_slice(&e.rows[i * e.width..(i + 1) * e.width]);
                self.served += 1;
                self.hits += 1;
                self.seen.push(x);
                if self.served == e.ts.len() {
                    self.set = e.state.clone();
                    self.seen = Vec::new();
                    self.cached = None;
                }
                self.record(bar.ts, h, out);
                return;
            }
            // History changed: rebuild the kernels from the bars seen so far, then compute.
            self.set = FeatureSet::new(&self.specs);
            let mut scratch = vec![0.0; self.set.width()];
            for b in std::mem::take(&mut self.seen) {
                self.set.update(&b, &mut scratch);
            }
            self.cached = None;
        }
        self.set.update(&x, out);
        self.computed += 1;
        self.record(bar.ts, h, out);
    }

    fn record(&mut self, ts: i64, h: u64, row: &[f64]) {
        self.ts.push(ts);
        self.hashes.push(h);
        self.rows.extend_from_slice(row);
    }

    /// The entry to store after the run, unless the run ended inside the cached history (the
    /// longer entry on disk is then kept).
    pub fn into_entry(self) -> Option<Entry> {
        if self.cached.is_some() {
            return None;
        }
        Some(Entry {
            width: self.set.width(),
            state: self.set,
            ts: self.ts,
            hashes: self.hashes,
            rows: self.rows,
        })
    }
}
