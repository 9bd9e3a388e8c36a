//! `fdp backup` and `fdp restore`: a deployment's state, Redis and PostgreSQL, copied while a run
//! writes and put back into fresh servers.
//!
//! Redis holds the stream (messages not yet acknowledged, the consumer group's pending entries),
//! the shared floor and the orchestrator's cycles; PostgreSQL holds everything decided (the
//! ledger, recorded bars, committed times, models, the audit log). The backup copies **Redis
//! first, PostgreSQL second**, so a restored pair has PostgreSQL at or after Redis:
//! - a message Redis still holds whose effects PostgreSQL already committed is harmless (a work
//!   item loads only bars after the committed time, recorded bars are written `ON CONFLICT DO
//!   NOTHING`, a redelivered bar message is recognised by its stream id);
//! - what Redis lost (cycles added after its copy) the orchestrator adds again on its schedule.
//!
//! The other order could leave Redis having acknowledged messages whose effects the restored
//! database lacks, and nothing would bring them back.
//!
//! Redis is copied with `redis-cli --rdb` (a snapshot over the replication protocol: it works with
//! persistence off and needs no access to the server's disk); PostgreSQL with `pg_basebackup`
//! (plain format, WAL streamed into the copy, so it is consistent on its own) checked by
//! `pg_verifybackup`. With WAL archiving configured on the server (see `deploy/README.md`),
//! `fdp restore --wal-archive` replays the archive after the base backup, up to its end or to a
//! chosen time. `backup.json` records what was copied, with checksums.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::fault::{Blame, Fault};

/// What went wrong in a backup or a restore.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The command line named a folder that already holds files where a new one must go.
    #[error("{}: {why}", dir.display())]
    NotEmpty {
        /// The folder.
        dir: std::path::PathBuf,
        /// What the folder was for.
        why: &'static str,
    },
    /// A tool this needs (`redis-cli`, `pg_basebackup`, `pg_verifybackup`) is not installed.
    #[error("{tool} not found on PATH or under /usr/lib/postgresql/*/bin: install it ({package})")]
    Missing {
        /// The program.
        tool: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// A tool ran and failed; its standard error is kept (bounded).
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Its exit status.
        status: String,
        /// The end of what it printed on standard error.
        stderr: String,
    },
    /// A copy does not match the checksum its backup recorded, or is not what it claims to be.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading the committed times from PostgreSQL.
    #[error(transparent)]
    Db(#[from] crate::sinks::postgres::DbError),
}

impl Blame for BackupError {
    fn fault(&self) -> Fault {
        match self {
            BackupError::NotEmpty { .. } | BackupError::Missing { .. } => Fault::Input,
            BackupError::Tool { .. } => Fault::Service,
            BackupError::Corrupt { .. } => Fault::Data,
            BackupError::Io { source, .. } => source.fault(),
            BackupError::Db(e) => e.fault(),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a backup holds, written as `backup.json` beside the copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// This file's format (1).
    pub format: u32,
    /// `fdp`'s version that made it.
    pub fdp_version: String,
    /// When the Redis copy started (RFC 3339, UTC).
    pub started: String,
    /// When the PostgreSQL copy ended.
    pub finished: String,
    /// The Redis snapshot.
    pub redis: RedisCopy,
    /// The PostgreSQL base backup's folder, relative to the backup.
    pub postgres_dir: String,
    /// Each live run's committed time (epoch seconds) read before the base backup began: the
    /// restored database holds at least this much of every run.
    pub runs: Vec<RunMark>,
}

impl Manifest {
    /// The manifest of a backup that started at `started` and ends now, its snapshot
    /// `redis.rdb` of `bytes` with `sha256`, its base backup in `postgres/`.
    fn new(started: String, bytes: u64, sha256: String, runs: Vec<RunMark>) -> Manifest {
        Manifest {
            format: 1,
            fdp_version: env!("CARGO_PKG_VERSION").into(),
            started,
            finished: now(),
            redis: RedisCopy {
                file: "redis.rdb".into(),
                bytes,
                sha256,
            },
            postgres_dir: "postgres".into(),
            runs,
        }
    }
}

/// The Redis snapshot of a backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RedisCopy {
    /// The RDB file, relative to the backup.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

/// A run's committed time at backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMark {
    /// The run id.
    pub run_id: String,
    /// Event time (epoch seconds) through which its decisions were written.
    pub committed: i64,
}

/// Finds a program on `PATH`, else in the newest `/usr/lib/postgresql/<major>/bin` (Debian puts
/// `pg_verifybackup` only there).
fn tool(name: &'static str, package: &'static str) -> Result<PathBuf, BackupError> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut pg: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let major = e.file_name().to_string_lossy().parse().ok()?;
                    Some((major, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    pg.sort();
    on_path
        .into_iter()
        .chain(pg.into_iter().rev().map(|(_, b)| b))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(BackupError::Missing {
            tool: name,
            package,
        })
}

/// Runs a tool to completion; its standard error (the last 2,000 characters) goes into the error
/// when it fails. Passwords in URLs reach the tool as arguments only where the tool takes a URL.
fn run_tool(tool: &'static str, cmd: &mut Command) -> Result<(), BackupError> {
    let out = cmd.output().map_err(|e| BackupError::Tool {
        tool,
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr);
    let tail: String = {
        let chars: Vec<char> = text.trim().chars().collect();
        chars[chars.len().saturating_sub(2000)..].iter().collect()
    };
    Err(BackupError::Tool {
        tool,
        status: out.status.to_string(),
        stderr: tail,
    })
}

fn sha256_of(path: &Path) -> Result<(u64, String), BackupError> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(io(path))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, h.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Each run's committed time, or none when the database was never migrated.
async fn committed_runs(database_url: &str) -> Result<Vec<RunMark>, BackupError> {
    let c = crate::sinks::postgres::connect(database_url).await?;
    let exists: bool = c
        .query_one("SELECT to_regclass('stream_state') IS NOT NULL", &[])
        .await
        .map_err(crate::sinks::postgres::DbError::from)?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = c
        .query(
            "SELECT run_id, committed FROM stream_state ORDER BY run_id",
            &[],
        )
        .await
        .map_err(crate::sinks::postgres::DbError::from)?;
    Ok(rows
        .iter()
        .map(|r| RunMark {
            run_id: r.get(0),
            committed: r.get(1),
        })
        .collect())
}

/// Copies Redis, then PostgreSQL, into `out` (created; it must be absent or empty), checks both
/// copies and writes `backup.json`.
///
/// # Errors
/// `out` holds files, a tool is missing or fails, a copy fails its check.
pub fn backup(out: &Path, database_url: &str, redis_url: &str) -> Result<Manifest, BackupError> {
    let redis_cli = tool("redis-cli", "redis-tools")?;
    let basebackup = tool("pg_basebackup", "postgresql-client")?;
    let verify = tool("pg_verifybackup", "postgresql")?;
    ensure_empty(out, "the backup folder must be new or empty")?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let started = now();
    let _span = tracing::info_span!("backup", out = %out.display()).entered();

    // Redis first (see the module's documentation for why).
    let rdb = out.join("redis.rdb");
    run_tool(
        "redis-cli",
        Command::new(&redis_cli)
            .args(["-u", redis_url, "--rdb"])
            .arg(&rdb),
    )?;
    check_rdb(&rdb)?;
    let (bytes, sha256) = sha256_of(&rdb)?;
    tracing::info!(bytes, "redis copied");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io(out))?;
    let runs = rt.block_on(committed_runs(database_url))?;

    let pg_dir = out.join("postgres");
    run_tool(
        "pg_basebackup",
        Command::new(&basebackup)
            .args(["-d", database_url, "-D"])
            .arg(&pg_dir)
            .args(["-X", "stream", "-c", "fast", "--no-password"])
            .args(["-l", &format!("fdp backup {started}")]),
    )?;
    run_tool(
        "pg_verifybackup",
        Command::new(&verify).args(["--quiet"]).arg(&pg_dir),
    )?;
    tracing::info!("postgres copied and verified");

    let manifest = Manifest::new(started, bytes, sha256, runs);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        path: out.join("backup.json"),
        source: std::io::Error::other(e),
    })?;
    let path = out.join("backup.json");
    crate::sinks::files::write_whole(&path, &json).map_err(io(&path))?;
    Ok(manifest)
}

/// An RDB file starts with `REDIS` and a four-digit version.
fn check_rdb(path: &Path) -> Result<(), BackupError> {
    use std::io::Read;
    let mut head = [0u8; 9];
    let ok = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[..5] == b"REDIS"
        && head[5..].iter().all(u8::is_ascii_digit);
    if ok {
        Ok(())
    } else {
        Err(BackupError::Corrupt {
            path: path.to_path_buf(),
            problem: "not a Redis RDB snapshot (no REDIS header)".into(),
        })
    }
}

/// Where `fdp restore` puts things.
#[derive(Debug, Clone)]
pub struct RestoreTo {
    /// A new PostgreSQL data folder (absent or empty); start a server on it afterwards.
    pub pg_data: PathBuf,
    /// A folder for Redis's `dump.rdb`; start `redis-server --dir` on it with `appendonly no`.
    pub redis_dir: PathBuf,
    /// The server's WAL archive: replayed after the base backup when given.
    pub wal_archive: Option<PathBuf>,
    /// Stop replaying the archive at this time (PostgreSQL's `recovery_target_time` syntax);
    /// the end of the archive when absent.
    pub target_time: Option<String>,
}

/// Checks a backup against its manifest and lays it out for fresh servers: the base backup as
/// a data folder (with the archive's `restore_command` and `recovery.signal` when a WAL archive
/// is given) and the snapshot as `dump.rdb`. Starts nothing: the servers are started by whoever
/// runs them, as the runbook says.
///
/// # Errors
/// The backup is incomplete or does not match its checksums, a target is not empty, copying
/// fails.
pub fn restore(backup: &Path, to: &RestoreTo) -> Result<Manifest, BackupError> {
    let path = backup.join("backup.json");
    let text = std::fs::read(&path).map_err(io(&path))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BackupError::Corrupt {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    let rdb = backup.join(&manifest.redis.file);
    let (bytes, sha256) = sha256_of(&rdb)?;
    if (bytes, sha256.as_str()) != (manifest.redis.bytes, manifest.redis.sha256.as_str()) {
        return Err(BackupError::Corrupt {
            path: rdb,
            problem: format!(
                "{bytes} bytes with SHA-256 {sha256}; backup.json recorded {} bytes with {}",
                manifest.redis.bytes, manifest.redis.sha256
            ),
        });
    }
    let pg_src = backup.join(&manifest.postgres_dir);
    let verify = tool("pg_verifybackup", "postgresql")?;
    run_tool(
        "pg_verifybackup",
        Command::new(&verify)
            .args(["--quiet", "--no-parse-wal"])
            .arg(&pg_src),
    )?;
    for dir in [&to.pg_data, &to.redis_dir] {
        ensure_empty(dir, "restore only into a new or empty folder")?;
    }
    copy_tree(&pg_src, &to.pg_data)?;
    set_mode(&to.pg_data, 0o700)?;
    // The copy of the source's archive settings must not archive into the source's archive.
    let auto = to.pg_data.join("postgresql.auto.conf");
    let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
    conf.push_str("\n# fdp restore\narchive_mode = 'off'\n");
    if let Some(archive) = &to.wal_archive {
        let archive = std::path::absolute(archive).map_err(io(archive))?;
        conf.push_str(&format!(
            "restore_command = 'cp \"{}/%f\" \"%p\"'\nrecovery_target_timeline = 'latest'\n",
            archive.display().to_string().replace('\'', "''")
        ));
        if let Some(t) = &to.target_time {
            conf.push_str(&format!(
                "recovery_target_time = '{}'\nrecovery_target_action = 'promote'\n",
                t.replace('\'', "''")
            ));
        }
        let signal = to.pg_data.join("recovery.signal");
        std::fs::write(&signal, b"").map_err(io(&signal))?;
    }
    std::fs::write(&auto, conf).map_err(io(&auto))?;
    std::fs::create_dir_all(&to.redis_dir).map_err(io(&to.redis_dir))?;
    let dump = to.redis_dir.join("dump.rdb");
    std::fs::copy(&rdb, &dump).map_err(io(&dump))?;
    Ok(manifest)
}

/// Refuses a folder that exists and holds anything, saying `why`.
fn ensure_empty(dir: &Path, why: &'static str) -> Result<(), BackupError> {
    if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
        return Err(BackupError::NotEmpty {
            dir: dir.to_path_buf(),
            why,
        });
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io(path))
}

/// Copies a folder tree (files and folders; a base backup has no links but `pg_wal`'s, which
/// `pg_basebackup` writes as a plain folder).
fn copy_tree(from: &Path, to: &Path) -> Result<(), BackupError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for e in std::fs::read_dir(from).map_err(io(from))? {
        let e = e.map_err(io(from))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().map_err(io(&src))?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst).map_err(io(&dst))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rdb_is_recognised_by_its_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("good.rdb");
        std::fs::write(&good, b"REDIS0011\xfa\x09redis-ver").expect("write");
        assert!(check_rdb(&good).is_ok());
        let bad = dir.path().join("bad.rdb");
        std::fs::write(&bad, b"-ERR not allowed").expect("write");
        assert!(matches!(check_rdb(&bad), Err(BackupError::Corrupt { .. })));
        assert!(check_rdb(&dir.path().join("absent.rdb")).is_err());
    }

    #[test]
    fn a_backup_whose_snapshot_changed_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = dir.path().join("backup");
        std::fs::create_dir_all(b.join("postgres")).expect("mkdir");
        std::fs::write(b.join("redis.rdb"), b"REDIS0011 one").expect("write");
        let (bytes, sha256) = sha256_of(&b.join("redis.rdb")).expect("hash");
        let m = Manifest::new(now(), bytes, sha256, vec![]);
        std::fs::write(b.join("backup.json"), serde_json::to_vec(&m).expect("json"))
            .expect("write");
        std::fs::write(b.join("redis.rdb"), b"REDIS0011 two").expect("tamper");
        let to = RestoreTo {
            pg_data: dir.path().join("pg"),
            redis_dir: dir.path().join("redis"),
            wal_archive: None,
            target_time: None,
        };
        let e = restore(&b, &to).expect_err("refused");
        assert!(matches!(e, BackupError::Corrupt { .. }), "{e}");
        assert!(!to.pg_data.exists() && !to.redis_dir.exists());
    }

    #[test]
    fn a_backup_into_a_folder_that_holds_files_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x"), b"x").expect("write");
        let e = backup(
            dir.path(),
            "postgres://127.0.0.1:1/x",
            "redis://127.0.0.1:1",
        )
        .expect_err("refused");
        assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    }
}
