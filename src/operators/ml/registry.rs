//! The model registry on the filesystem: every trained ensemble with its metadata (features,
//! training window, parameters, out-of-sample scores, creation time), kept for a time-to-live
//! (30 days by default) and cleaned up after.
//!
//! A model is two files in the registry directory: `<id>.model` (bincode of the metadata and the
//! fitted ensemble, which loads back to identical predictions) and `<id>.json` (the metadata, for
//! people and tools). Both are written to a temporary name and renamed, so a reader never sees
//! half a model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::stacking::{Scores, Stacking, StackingParams};
use crate::time::EventTime;

/// Default time-to-live: 30 days.
pub const DEFAULT_TTL_SECONDS: i64 = 30 * 86_400;

/// What is known about a trained model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Registry id (file stem): `<ticker>@<trained_at>`.
    pub id: String,
    /// The ticker it trades.
    #[serde(default)]
    pub ticker: String,
    /// Feature columns, in the order the model reads them.
    pub features: Vec<String>,
    /// Event time of the first training sample.
    pub train_from: EventTime,
    /// Event time of the bar it was trained at (every label it saw was known by then).
    pub trained_at: EventTime,
    /// Training samples.
    pub samples: usize,
    /// Hyperparameters.
    pub params: StackingParams,
    /// Out-of-sample scores: each base model, then `ensemble`, then `baseline`.
    pub scores: Vec<(String, Scores)>,
    /// Wall-clock creation time (Unix seconds), for the time-to-live.
    pub created_unix: i64,
}

/// Errors of the registry; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not a model or its metadata.
    #[error("{path}: not a model of this version: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

impl crate::fault::Blame for RegistryError {
    fn fault(&self) -> crate::fault::Fault {
        use crate::fault::Fault;
        match self {
            RegistryError::Io { source, .. } => source.fault(),
            RegistryError::Corrupt { .. } => Fault::Data,
        }
    }
}

/// Where trained models go: the filesystem [`Registry`] by default, or PostgreSQL
/// ([`crate::sinks::postgres::PgModelStore`]) in a streaming run with a database.
pub trait ModelStore: std::fmt::Debug + Send + Sync {
    /// Stores a model and its metadata (an id stored before is replaced).
    ///
    /// # Errors
    /// The store refused it; the text names the place.
    fn save(&self, meta: &ModelMeta, model: &Stacking) -> Result<(), String>;
}

impl ModelStore for Registry {
    fn save(&self, meta: &ModelMeta, model: &Stacking) -> Result<(), String> {
        Registry::save(self, meta, model).map_err(|e| e.to_string())
    }
}

/// Reads the wall clock as Unix seconds. Operators never call one themselves: the driver hands
/// one in with the store ([`StoreHandle`]), so a test can stamp models with a fixed time.
pub type WallClock = fn() -> i64;

/// Where trained models go and the clock that stamps their creation time (for the time-to-live),
/// both chosen by the driver.
#[derive(Clone)]
pub struct StoreHandle {
    /// The store.
    pub store: Arc<dyn ModelStore>,
    /// The creation-time clock.
    pub clock: WallClock,
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreHandle")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A registry directory.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
    ttl: i64,
}

impl Registry {
    /// Opens (creating) the directory; models older than `ttl_seconds` are due for cleanup.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &Path, ttl_seconds: i64) -> Result<Registry, RegistryError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        Ok(Registry {
            dir: dir.to_path_buf(),
            ttl: ttl_seconds,
        })
    }

    fn write_atomic(&self, name: &str, bytes: &[u8]) -> Result<(), RegistryError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Stores a model under `meta.id`.
    ///
    /// # Errors
    /// A file that cannot be written.
    pub fn save(&self, meta: &ModelMeta, model: &Stacking) -> Result<(), RegistryError> {
        let corrupt = |e: &dyn std::fmt::Display| RegistryError::Corrupt {
            path: self.dir.join(&meta.id),
            message: e.to_string(),
        };
        let bytes = bincode::serialize(&(meta, model)).map_err(|e| corrupt(&e))?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| corrupt(&e))?;
        self.write_atomic(&format!("{}.model", meta.id), &bytes)?;
        self.write_atomic(&format!("{}.json", meta.id), &json)
    }

    /// Loads a model and its metadata.
    ///
    /// # Errors
    /// A missing or unreadable file, or one that is not a model.
    pub fn load(&self, id: &str) -> Result<(ModelMeta, Stacking), RegistryError> {
        let path = self.dir.join(format!("{id}.model"));
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        bincode::deserialize(&bytes).map_err(|e| RegistryError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    /// Metadata of every model, oldest first (by training time, then id).
    ///
    /// # Errors
    /// An unreadable directory or metadata file.
    pub fn list(&self) -> Result<Vec<ModelMeta>, RegistryError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let path = entry.map_err(io(&self.dir))?.path();
            if path.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read(&path).map_err(io(&path))?;
                let meta: ModelMeta =
                    serde_json::from_slice(&text).map_err(|e| RegistryError::Corrupt {
                        path: path.clone(),
                        message: e.to_string(),
                    })?;
                out.push(meta);
            }
        }
        out.sort_by(|a, b| (a.trained_at, &a.id).cmp(&(b.trained_at, &b.id)));
        Ok(out)
    }

    /// Removes the models created more than the time-to-live before `now_unix`; returns their
    /// ids.
    ///
    /// # Errors
    /// A file that cannot be listed or removed.
    pub fn cleanup(&self, now_unix: i64) -> Result<Vec<String>, RegistryError> {
        let mut removed = Vec::new();
        for m in self.list()? {
            if now_unix - m.created_unix > self.ttl {
                for ext in ["model", "json"] {
                    let p = self.dir.join(format!("{}.{ext}", m.id));
                    match std::fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io(&p)(e)),
                    }
                }
                removed.push(m.id);
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operators::ml::stacking::score;
    use crate::operators::ml::walk_forward::Span;

    fn trained() -> (Stacking, Vec<Vec<f64>>) {
        let x: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let a = ((i * 37) % 101) as f64 / 50.0 - 1.0;
                vec![a, ((i * 53) % 97) as f64 / 48.0 - 1.0]
            })
            .collect();
        let y: Vec<i32> = x
            .iter()
            .map(|r| i32::from(r[0] + 0.3 * r[1] > 0.0))
            .collect();
        let spans: Vec<Span> = (0..200)
            .map(|i| Span {
                start: i,
                end: i + 1,
            })
            .collect();
        let p = StackingParams {
            trees: 5,
            ..StackingParams::default()
        };
        let (m, _) = Stacking::fit(&x, &y, &spans, p).expect("fit");
        (m, x)
    }

    fn meta(id: &str, trained_at: EventTime, created_unix: i64) -> ModelMeta {
        ModelMeta {
            id: id.into(),
            ticker: "T".into(),
            features: vec!["a".into(), "b".into()],
            train_from: 0,
            trained_at,
            samples: 200,
            params: StackingParams::default(),
            scores: vec![("ensemble".into(), score(&[0.9, 0.1], &[1, 0]))],
            created_unix,
        }
    }

    #[test]
    fn a_saved_model_loads_back_with_identical_predictions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Registry::open(dir.path(), DEFAULT_TTL_SECONDS).expect("registry");
        let (model, x) = trained();
        let m = meta("m1", 100, 1_000);
        r.save(&m, &model).expect("save");
        let (m2, loaded) = r.load("m1").expect("load");
        assert_eq!(m2, m);
        assert_eq!(loaded.predict_proba(&x), model.predict_proba(&x));
        assert_eq!(r.list().expect("list"), vec![m]);
    }

    #[test]
    fn models_past_their_time_to_live_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Registry::open(dir.path(), DEFAULT_TTL_SECONDS).expect("registry");
        let (model, _) = trained();
        let now = 2_000_000_000;
        r.save(&meta("old", 1, now - DEFAULT_TTL_SECONDS - 1), &model)
            .expect("save");
        r.save(&meta("new", 2, now - 86_400), &model).expect("save");
        assert_eq!(r.cleanup(now).expect("cleanup"), vec!["old".to_string()]);
        let left: Vec<String> = r.list().expect("list").into_iter().map(|m| m.id).collect();
        assert_eq!(left, vec!["new".to_string()]);
        assert!(!dir.path().join("old.model").exists());
    }

    #[test]
    fn a_corrupt_model_names_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Registry::open(dir.path(), DEFAULT_TTL_SECONDS).expect("registry");
        std::fs::write(dir.path().join("bad.model"), b"not a model").expect("write");
        let e = r.load("bad").expect_err("corrupt");
        assert!(e.to_string().contains("bad.model"), "{e}");
    }
}
