//! Records the commit `fdp` is built from (`FDP_GIT_COMMIT`, read by `manifest::COMMIT`), so a
//! run folder's `run.json` names the code that made it. Outside a git checkout nothing is set.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
    };
    // A container build passes the commit in the environment (its context has no .git).
    println!("cargo:rerun-if-env-changed=FDP_GIT_COMMIT");
    if std::env::var_os("FDP_GIT_COMMIT").is_none()
        && let Some(commit) = git(&["rev-parse", "HEAD"])
    {
        println!("cargo:rustc-env=FDP_GIT_COMMIT={commit}");
    }
    // Rebuilt when HEAD moves (a commit, a checkout); the working tree's edits are not tracked.
    for path in ["HEAD", "refs/heads", "packed-refs"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
