//! What produced a run: `run.json` in its folder — the `fdp` version and commit, the command
//! line, the pipeline's fingerprint and overrides, and every input file's size and SHA-256 —
//! beside `pipeline.toml`, the pipeline as resolved (after `--set`). With these a run can be
//! reproduced, and `fdp compare` can say why two runs differ.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// The commit `fdp` was built from (`git rev-parse HEAD` at build time), `unknown` when it was
/// built outside a git checkout.
pub const COMMIT: &str = match option_env!("FDP_GIT_COMMIT") {
    Some(c) => c,
    None => "unknown",
};

/// An input file as read by the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Its path, as the pipeline resolved it.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its content, lowercase hex.
    pub sha256: String,
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The run's id (its folder's name).
    pub run_id: String,
    /// `fdp`'s version.
    pub fdp_version: String,
    /// [`COMMIT`].
    pub commit: String,
    /// The command line, as given.
    pub command_line: Vec<String>,
    /// The directory the command ran in (command-line paths are relative to it).
    pub working_dir: String,
    /// The pipeline file, as given.
    pub pipeline: String,
    /// The pipeline's name and the checksum of its resolved text.
    pub fingerprint: String,
    /// The `--set` overrides, in order.
    pub overrides: Vec<String>,
    /// Every input file read, sorted by path.
    pub inputs: Vec<Input>,
    /// When the folder was written (UTC, RFC 3339): the one wall-clock time in a run's outputs.
    pub written_at: String,
}

/// What a run folder records of its making: the manifest and the resolved pipeline's text.
#[derive(Debug, Clone)]
pub struct Provenance {
    /// `run.json`.
    pub manifest: Manifest,
    /// `pipeline.toml`.
    pub pipeline_text: String,
}

/// An input file that could not be read to be hashed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct HashError {
    /// The file.
    pub path: PathBuf,
    /// The failure.
    pub source: std::io::Error,
}

impl crate::fault::Blame for HashError {
    /// An input that vanished or cannot be read between the run and its outputs is the data's.
    fn fault(&self) -> crate::fault::Fault {
        crate::fault::Fault::Data
    }
}

/// Size and SHA-256 of a file, read in 1 MiB pieces.
///
/// # Errors
/// The file cannot be read.
pub fn hash_file(path: &Path) -> Result<Input, HashError> {
    use std::io::Read;
    let err = |source| HashError {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(err)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    let sha256 = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Input {
        path: path.display().to_string(),
        bytes,
        sha256,
    })
}

/// Hashes every file in `paths` (sorted, without duplicates).
///
/// # Errors
/// As [`hash_file`].
pub fn hash_inputs(paths: &[PathBuf]) -> Result<Vec<Input>, HashError> {
    let mut paths = paths.to_vec();
    paths.sort();
    paths.dedup();
    paths.iter().map(|p| hash_file(p)).collect()
}

/// Reads `run.json` from a run folder; `None` for a folder written before manifests.
///
/// # Errors
/// A `run.json` that cannot be read or parsed.
pub fn read(dir: &Path) -> Result<Option<Manifest>, std::io::Error> {
    let p = dir.join("run.json");
    match std::fs::read_to_string(&p) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", p.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_hashed_as_sha256_of_its_bytes() {
        let dir = std::env::temp_dir().join(format!("fdp-manifest-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let p = dir.join("abc.txt");
        let _ = std::fs::write(&p, b"abc");
        let got = hash_file(&p).ok();
        let _ = std::fs::remove_dir_all(&dir);
        let got = got.unwrap_or_else(|| panic!("hashed"));
        assert_eq!(got.bytes, 3);
        // FIPS 180-2's example.
        assert_eq!(
            got.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_missing_input_names_its_path() {
        let e = hash_file(Path::new("/nonexistent/fdp/x.csv")).err();
        assert!(e.is_some_and(|e| e.to_string().starts_with("/nonexistent/fdp/x.csv: ")));
    }
}
