//! Redis and PostgreSQL servers of a test's own, started from Debian's binaries in temporary
//! folders on free loopback ports, so a test may kill, restart, back up and restore them without
//! disturbing the shared servers the other tests use.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use findashpro::sources::redis_stream::Conn;

use crate::common::{free_port, signal};

/// A Redis server of this test's own.
pub struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl PrivateRedis {
    /// Append-only file, fsync'd on every write: a restart keeps the stream.
    pub fn start() -> PrivateRedis {
        PrivateRedis::launch_with(
            tempfile::tempdir().expect("tempdir"),
            &[
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ],
        )
    }

    /// No persistence (as the shared test server): what it holds dies with it.
    pub fn volatile() -> PrivateRedis {
        PrivateRedis::launch_with(
            tempfile::tempdir().expect("tempdir"),
            &["--save", "", "--appendonly", "no"],
        )
    }

    /// Loads `dump.rdb` from `dir` (as `fdp restore` lays it out), with no persistence after.
    pub fn from_snapshot(dir: tempfile::TempDir) -> PrivateRedis {
        PrivateRedis::launch_with(
            dir,
            &[
                "--dbfilename",
                "dump.rdb",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        )
    }

    fn launch_with(dir: tempfile::TempDir, args: &[&str]) -> PrivateRedis {
        let mut r = PrivateRedis {
            port: free_port(),
            dir,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        r.launch();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(&self.args)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let started = Instant::now();
        while Conn::open(&self.url()).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "private redis up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the server is gone with whatever it did not persist.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL, then a new server on the same port and data.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A PostgreSQL cluster of this test's own (trust auth, replication allowed from loopback as
/// initdb's defaults have it) in a temporary folder.
pub struct PrivatePg {
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// Runs `program` as the `postgres` account when this process is root (PostgreSQL refuses to
/// run as root).
fn as_postgres(program: &Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Hands `path` (recursively) to the `postgres` account, when this process may.
pub fn give_to_postgres(path: &Path) {
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status();
}

impl PrivatePg {
    /// A folder and a port for a cluster, nothing in it yet.
    pub fn empty() -> PrivatePg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL binaries in /usr/lib/postgresql")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|b| b.join("initdb").exists())
            .expect("initdb");
        let dir = tempfile::Builder::new()
            .prefix("fdp-pg")
            .tempdir_in("/tmp")
            .expect("tempdir");
        give_to_postgres(dir.path());
        PrivatePg {
            port: free_port(),
            dir,
            bin,
        }
    }

    /// A new cluster (initdb, no fsync: the tests kill processes, not machines), started.
    pub fn start() -> PrivatePg {
        let pg = PrivatePg::empty();
        pg.initdb(&["fsync = off"]);
        pg.ctl("start");
        pg
    }

    /// Creates the cluster, appending `settings` (`name = value` lines) to its
    /// `postgresql.conf` (so a base backup of it carries them too).
    pub fn initdb(&self, settings: &[&str]) {
        let ok = self
            .as_owner("initdb")
            .args(["-A", "trust", "-U", "postgres", "-D"])
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb runs");
        assert!(ok.success(), "initdb");
        let conf = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("postgresql.conf");
        for s in settings {
            text.push_str(s);
            text.push('\n');
        }
        std::fs::write(&conf, text).expect("postgresql.conf written");
    }

    /// The data folder.
    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A folder beside the data, owned by the server's account (an archive, a log).
    pub fn side_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        give_to_postgres(&d);
        d
    }

    fn as_owner(&self, program: &str) -> Command {
        as_postgres(&self.bin.join(program))
    }

    /// `pg_ctl start|stop|…`, waiting for it; the server logs to `server.log` beside the data.
    pub fn ctl(&self, what: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        let ok = self
            .as_owner("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &opts, "-w", "-t", "120", "-m", "fast", what])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("pg_ctl runs");
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        assert!(ok.success(), "pg_ctl {what}; server log:\n{log}");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// SIGKILL to the postmaster and every backend (no shutdown, no checkpoint): a server lost
    /// with whatever WAL it had not archived.
    pub fn kill(&self) {
        let pidfile = self.data().join("postmaster.pid");
        let pid = std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|t| t.lines().next().map(str::to_string))
            .expect("postmaster.pid");
        let _ = Command::new("pkill").args(["-9", "-P", &pid]).status();
        let pid: u32 = pid.trim().parse().expect("a pid in postmaster.pid");
        signal(pid, "KILL");
        let started = Instant::now();
        while signal(pid, "0") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "postmaster gone"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Backends outlive a killed postmaster for a moment; they hold its shared memory.
        std::thread::sleep(Duration::from_millis(300));
    }

    /// SIGKILL, then a start: the server recovers from its WAL.
    pub fn kill_and_restart(&self) {
        self.kill();
        self.ctl("start");
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self
                .as_owner("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
