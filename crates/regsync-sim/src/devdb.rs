//! A throw-away PostgreSQL cluster, started from the local server binaries
//! for the demo and the tests when no `DATABASE_URL` is given, and removed
//! when dropped. PostgreSQL refuses to run as root, so as root the server
//! runs as the `postgres` user (or `nobody`).

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

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

/// A running throw-away cluster. The server is a child of this process and
/// dies with it (parent-death signal), so a test run that is killed leaves no
/// server behind.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    account: Option<(u32, u32)>,
    port: u16,
    server: Option<Child>,
    /// The parent-death signal fires when the *thread* that spawned the
    /// server ends, so a dedicated thread spawns it and lives as long as the
    /// cluster does; dropping this sender ends it.
    keeper: Option<mpsc::Sender<()>>,
    url: String,
    tls: bool,
    /// `listen_addresses`.
    listen: String,
}

/// A fresh directory for a cluster, owned by the account that runs it.
fn new_dir(account: Option<(u32, u32)>) -> Result<PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!("regsync-pg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| step("create directory", e))?;
    if let Some((uid, gid)) = account {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| step("chown directory", e))?;
    }
    Ok(dir)
}

impl Cluster {
    /// Creates and starts a cluster in a fresh temporary directory, listening
    /// on a free loopback port, tuned for speed over durability.
    ///
    /// # Errors
    /// Binaries missing, or `initdb`/`postgres` failed (their output included).
    pub fn start() -> Result<Self, Error> {
        Self::start_with(None)
    }

    /// [`Cluster::start`] with TLS on, serving `certificate` and its
    /// `private_key` (PEM): for tests of encrypted connections.
    ///
    /// # Errors
    /// As [`Cluster::start`], or the files could not be written.
    pub fn start_with_tls(certificate: &str, private_key: &str) -> Result<Self, Error> {
        Self::start_with(Some((certificate, private_key)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Result<Self, Error> {
        remove_stale_clusters();
        let bin = find_bin_dir().ok_or(Error::NotInstalled)?;
        let is_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        let account =
            if is_root { Some(account(if user_exists("postgres") { "postgres" } else { "nobody" })?) } else { None };
        let dir = new_dir(account)?;
        let mut cluster = Self {
            dir,
            bin,
            account,
            port: 0,
            server: None,
            keeper: None,
            url: String::new(),
            tls: tls.is_some(),
            listen: "127.0.0.1".into(),
        };
        let data = cluster.dir.join("data");
        let output = as_account(Command::new(cluster.bin.join("initdb")), account)
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| step("initdb", e))?;
        if !output.status.success() {
            return Err(Error::Step { step: "initdb", detail: String::from_utf8_lossy(&output.stderr).into_owned() });
        }
        if let Some((certificate, private_key)) = tls {
            for (name, pem) in [("server.crt", certificate), ("server.key", private_key)] {
                let path = data.join(name);
                std::fs::write(&path, pem).map_err(|e| step("write the TLS files", e))?;
                // PostgreSQL refuses a key others can read.
                std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                    .map_err(|e| step("protect the TLS files", e))?;
                if let Some((uid, gid)) = account {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                        .map_err(|e| step("chown the TLS files", e))?;
                }
            }
        }
        cluster.port = free_port().map_err(|e| step("pick a port", e))?;
        cluster.spawn_server()?;
        cluster.url = format!("postgres://postgres@127.0.0.1:{}/postgres", cluster.port);
        Ok(cluster)
    }

    /// Restarts the server listening on every address of its network
    /// namespace, trusting clients from `network` (CIDR) as from loopback:
    /// for a lab whose clients reach it through a router. A standby made
    /// afterwards does the same.
    ///
    /// # Errors
    /// The configuration could not be written, or the server did not come up.
    pub fn serve_network(&mut self, network: &str) -> Result<(), Error> {
        let hba = self.dir.join("data").join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).map_err(|e| step("read pg_hba.conf", e))?;
        rules.push_str(&format!("host all all {network} trust\nhost replication all {network} trust\n"));
        std::fs::write(&hba, rules).map_err(|e| step("write pg_hba.conf", e))?;
        self.listen = "*".into();
        self.stop_server();
        self.spawn_server()
    }

    /// Crashes the server (SIGQUIT, no clean shutdown) and leaves it down
    /// until [`Cluster::start_again`]: for tests of database outages.
    pub fn crash(&mut self) {
        self.stop_server();
    }

    /// A streaming standby of this cluster, in a directory and on a port of
    /// its own, made from a base backup (`pg_basebackup -R`): it follows the
    /// primary until promoted (`SELECT pg_promote()`). For tests of a
    /// failover; make its commits wait for it with
    /// `synchronous_standby_names` on the primary.
    ///
    /// # Errors
    /// The base backup or the server failed.
    pub fn standby(&self) -> Result<Self, Error> {
        let dir = new_dir(self.account)?;
        let output = as_account(Command::new(self.bin.join("pg_basebackup")), self.account)
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-R", "-X", "stream"])
            .args(["--no-sync", "-c", "fast"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| step("pg_basebackup", e))?;
        if !output.status.success() {
            let detail = String::from_utf8_lossy(&output.stderr).into_owned();
            return Err(Error::Step { step: "pg_basebackup", detail });
        }
        let mut standby = Self {
            dir,
            bin: self.bin.clone(),
            account: self.account,
            port: free_port().map_err(|e| step("pick a port", e))?,
            server: None,
            keeper: None,
            url: String::new(),
            tls: self.tls,
            listen: self.listen.clone(),
        };
        standby.spawn_server()?;
        standby.url = format!("postgres://postgres@127.0.0.1:{}/postgres", standby.port);
        Ok(standby)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) the postmaster: a database that
    /// hangs new connections instead of refusing them.
    pub fn freeze(&self, frozen: bool) {
        if let Some(server) = &self.server {
            signal(server, if frozen { Signal::SIGSTOP } else { Signal::SIGCONT });
        }
    }

    /// Starts the server again on the same port and data after [`Cluster::crash`].
    ///
    /// # Errors
    /// It did not come up.
    pub fn start_again(&mut self) -> Result<(), Error> {
        self.spawn_server()
    }

    fn spawn_server(&mut self) -> Result<(), Error> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .map_err(|e| step("open the log", e))?;
        let mut command = as_account(Command::new(self.bin.join("postgres")), self.account);
        command
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .arg("-c")
            .arg(format!("listen_addresses={}", self.listen))
            .args(["-c", "max_connections=300", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", if self.tls { "ssl=on" } else { "ssl=off" }])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (keeper, stop) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let _ = spawned_tx.send(command.spawn());
            let _ = stop.recv();
        });
        self.keeper = Some(keeper);
        let server =
            spawned_rx.recv().map_err(|e| step("start postgres", e))?.map_err(|e| step("start postgres", e))?;
        self.server = Some(server);
        self.wait_ready(self.port)
    }

    fn stop_server(&mut self) {
        if let Some(mut server) = self.server.take() {
            // SIGQUIT: immediate shutdown, as a crash would.
            signal(&server, Signal::SIGQUIT);
            let _ = server.wait();
        }
        self.keeper.take();
    }

    /// URL of the `postgres` database as superuser `postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn wait_ready(&mut self, port: u16) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(server) = self.server.as_mut() {
                if let Ok(Some(status)) = server.try_wait() {
                    let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                    return Err(Error::Step { step: "start postgres", detail: format!("exited with {status}: {log}") });
                }
            }
            // Ready once the server has written its pid file's "ready" line
            // and accepts TCP connections.
            // Connect first: a listening server has already replaced the pid
            // file a crashed one left behind.
            let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid")).unwrap_or_default();
            // A hot standby says "standby" where a primary says "ready".
            if listening && pid.lines().any(|l| matches!(l.trim(), "ready" | "standby")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Error::Step { step: "start postgres", detail: "not ready within 30 s".into() })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command` as `account` (when root) and makes it die with us.
fn as_account(mut command: Command, account: Option<(u32, u32)>) -> Command {
    if let Some((uid, gid)) = account {
        // A root parent that sets the uid also drops its supplementary groups.
        command.uid(uid).gid(gid);
    }
    die_with_parent(&mut command);
    command
}

/// A test killed mid-run must not leave a PostgreSQL server behind.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and the closure allocates nothing.
    // It runs after the uid change, which would clear the setting.
    unsafe { command.pre_exec(|| Ok(nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?)) };
}

/// Other systems have no parent-death signal: `Drop` stops the server.
#[cfg(not(target_os = "linux"))]
fn die_with_parent(_: &mut Command) {}

fn signal(server: &Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(server.id()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
    }
}

fn account(name: &str) -> Result<(u32, u32), Error> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| step("read /etc/passwd", e))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&name) && f.len() > 3)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .ok_or_else(|| step("find the account to run PostgreSQL as", name))
}

/// Deletes directories of clusters whose server is gone (a killed run).
fn remove_stale_clusters() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry.file_name().to_str().is_some_and(|n| n.starts_with("regsync-pg-"));
        let pid: Option<i32> = std::fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()));
        let alive = pid.is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        let young = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(60));
        if is_ours && !alive && !young {
            let _ = std::fs::remove_dir_all(path);
        }
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
