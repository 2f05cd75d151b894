//! A throw-away PostgreSQL cluster, started from the local server binaries
//! for the demo and the tests when no `DATABASE_URL` is given, and removed
//! when dropped. PostgreSQL refuses to run as root, so as root the server
//! runs as the `postgres` user (or `nobody`).

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `initdb`/`pg_ctl` found.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian/Ubuntu: `apt-get install postgresql`; \
         macOS: `brew install postgresql`), or set DATABASE_URL to a server you have"
    )]
    NotInstalled,
    /// A step failed.
    #[error("cannot start a throw-away PostgreSQL: {step}: {detail}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// Its output.
        detail: String,
    },
}

/// A running throw-away cluster.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    user: Option<&'static str>,
    url: String,
}

impl Cluster {
    /// Creates and starts a cluster in a fresh temporary directory, listening
    /// on a free loopback port, tuned for speed over durability.
    ///
    /// # Errors
    /// Binaries missing, or `initdb`/`pg_ctl` failed (their output included).
    pub fn start() -> Result<Self, Error> {
        let bin = find_bin_dir().ok_or(Error::NotInstalled)?;
        let is_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let user = is_root.then(|| if user_exists("postgres") { "postgres" } else { "nobody" });
        let dir = std::env::temp_dir().join(format!("regsync-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).map_err(|e| step("create directory", e))?;
        let mut cluster = Self { dir, bin, user, url: String::new() };
        if let Some(user) = user {
            cluster.run("chown", Command::new("chown").arg("-R").arg(user).arg(&cluster.dir))?;
        }
        let data = cluster.dir.join("data");
        cluster.run(
            "initdb",
            cluster.pg("initdb").arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]),
        )?;
        let port = free_port().map_err(|e| step("pick a port", e))?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            cluster.dir.display()
        );
        cluster.run(
            "pg_ctl start",
            cluster.pg("pg_ctl").arg("-D").arg(&data).arg("-o").arg(options).arg("-l").arg(cluster.dir.join("log")).args(["-w", "start"]),
        )?;
        cluster.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        Ok(cluster)
    }

    /// URL of the `postgres` database as superuser `postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn pg(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        match self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(&self, what: &'static str, command: &mut Command) -> Result<(), Error> {
        let output = command.stdin(Stdio::null()).output().map_err(|e| step(what, e))?;
        if output.status.success() {
            return Ok(());
        }
        let mut detail = String::from_utf8_lossy(&output.stderr).into_owned();
        if let Ok(log) = std::fs::read_to_string(self.dir.join("log")) {
            detail.push_str(&log);
        }
        Err(Error::Step { step: what, detail })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.pg("pg_ctl").arg("-D").arg(&data).args(["-m", "immediate", "-w", "stop"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn step(what: &'static str, e: impl std::fmt::Display) -> Error {
    Error::Step { step: what, detail: e.to_string() }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd").is_ok_and(|p| p.lines().any(|l| l.split(':').next() == Some(name)))
}

/// The directory of `initdb`: on PATH (links followed), else the newest
/// `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("initdb"))
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
            .and_then(|p| p.parent().map(Path::to_path_buf))
    });
    on_path.filter(|d| d.join("pg_ctl").is_file()).or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .filter(|(_, bin)| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}
