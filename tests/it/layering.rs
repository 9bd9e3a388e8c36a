//! The layering the architecture states: nothing under `src/operators/` imports `src/sources/` or
//! `src/sinks/` (operators decide; where data comes from and goes to plugs in around them), and
//! nothing there reads the wall clock (event time comes from the data; the model registry's
//! clock is handed in by the driver). Shared vocabulary — bars, rejects, facts, orders, names,
//! time, the calendar and the configuration with its feature schema — sits below all three.

use std::path::{Path, PathBuf};

use crate::common::repo;

/// Every `.rs` file under `dir`, recursively (or `dir` itself when it is a file).
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code lines (comments cut) of the files under `paths` that mention any of `banned`, as
/// `file:line: text`.
fn mentions(paths: &[&str], banned: &[&str]) -> (usize, Vec<String>) {
    let mut files = Vec::new();
    for p in paths {
        rust_files(&repo(p), &mut files);
    }
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if banned.iter().any(|m| code.contains(m)) {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    (files.len(), found)
}

#[test]
fn operators_import_neither_sources_nor_sinks() {
    let (files, found) = mentions(
        &["src/operators"],
        &[
            "crate::sources",
            "crate::sinks",
            "super::super::sources",
            "super::super::sinks",
        ],
    );
    assert!(files > 10, "the operators' files: {files}");
    assert!(
        found.is_empty(),
        "operators reach into sources or sinks:\n{}",
        found.join("\n")
    );
}

#[test]
fn operators_never_read_the_wall_clock() {
    let (_, found) = mentions(
        &["src/operators"],
        &[
            "SystemTime",
            "Instant::now",
            "Utc::now",
            "Local::now",
            "wall_unix",
        ],
    );
    assert!(
        found.is_empty(),
        "operators read the wall clock:\n{}",
        found.join("\n")
    );
}

#[test]
fn shared_vocabulary_sits_below_operators_sources_and_sinks() {
    let vocabulary = [
        "src/bar.rs",
        "src/frame.rs",
        "src/reject.rs",
        "src/fact.rs",
        "src/order.rs",
        "src/names.rs",
        "src/time.rs",
        "src/calendar.rs",
        "src/config",
    ];
    let (files, found) = mentions(
        &vocabulary,
        &[
            "crate::operators",
            "crate::sources",
            "crate::sinks",
            "crate::engine",
            "crate::stream",
        ],
    );
    assert!(files >= vocabulary.len(), "the vocabulary's files: {files}");
    assert!(
        found.is_empty(),
        "shared vocabulary imports what is built on it:\n{}",
        found.join("\n")
    );
}
