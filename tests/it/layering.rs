//! The layering the architecture states: nothing under `src/operators/` imports `src/sources/` or
//! `src/sinks/` (operators decide; where data comes from and goes to plugs in around them). Shared
//! vocabulary — bars, rejects, facts, orders, names, time — sits below both.

use std::path::Path;

use crate::common::repo;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn operators_import_neither_sources_nor_sinks() {
    let mut files = Vec::new();
    rust_files(&repo("src/operators"), &mut files);
    assert!(files.len() > 10, "the operators' files: {files:?}");
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if [
                "crate::sources",
                "crate::sinks",
                "super::super::sources",
                "super::super::sinks",
            ]
            .iter()
            .any(|m| code.contains(m))
            {
                found.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "operators reach into sources or sinks:\n{}",
        found.join("\n")
    );
}
