//! `regsync` and its neighbours as processes: the CLI, the daemon, signals
//! and exits.

use std::time::Duration;

pub use nix::sys::signal::Signal;
use regsync_sim::Sim;

use super::eventually;

/// The child's exit status, if it ends within `limit`, asked without
/// blocking the thread (an in-process simulator may be serving it).
pub async fn exited_within(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let mut status = None;
    eventually(limit, async || {
        status = child.try_wait().expect("wait");
        status.is_some()
    })
    .await;
    status
}

/// The child's exit status, if it ends within `limit` (blocks the thread).
pub fn exit_within(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let until = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if std::time::Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback port free right now, for a server started as a process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The environment that points a `regsync` process at `db` and `sim`.
pub fn simulator_env(db: &str, sim: &Sim) -> Vec<(&'static str, String)> {
    use regsync_sim::{CLIENT_ID, CLIENT_SECRET, TENANT};
    let at = sim.endpoints();
    vec![
        ("DATABASE_URL", db.to_owned()),
        ("REGSYNC__SOURCE__BASE_URL", at.platform),
        ("REGSYNC__GRAPH__BASE_URL", at.graph),
        ("REGSYNC__GRAPH__AUTHORITY_URL", at.authority),
        ("REGSYNC__GRAPH__TENANT_ID", TENANT.to_owned()),
        ("REGSYNC__GRAPH__CLIENT_ID", CLIENT_ID.to_owned()),
        ("REGSYNC__GRAPH__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
    ]
}

/// Runs the `regsync` binary with `args`, configured only through the
/// environment to use `db` and `sim` (plus `extra` variables).
pub fn regsync_cli(args: &[&str], db: &str, sim: &Sim, extra: &[(&str, &str)]) -> std::process::Output {
    regsync_command(args, db, sim, extra).output().expect("regsync runs")
}

/// [`regsync_cli`] for a command that must end by itself: killed after
/// `limit` if it has not (then `None`).
pub fn regsync_cli_within(
    args: &[&str],
    db: &str,
    sim: &Sim,
    extra: &[(&str, &str)],
    limit: Duration,
) -> Option<std::process::Output> {
    use std::process::Stdio;
    let mut child = regsync_command(args, db, sim, extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("regsync runs");
    if exit_within(&mut child, limit).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    }
    Some(child.wait_with_output().expect("output"))
}

fn regsync_command(args: &[&str], db: &str, sim: &Sim, extra: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_regsync"));
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(simulator_env(db, sim))
        .env("REGSYNC__SYNC__BACKOFF_BASE_MS", "1")
        .env("REGSYNC__SYNC__BACKOFF_MAX_MS", "1")
        .current_dir(std::env::temp_dir());
    for (k, v) in extra {
        command.env(k, v);
    }
    command
}

/// Kills the child if the test fails before it exits.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `regsync run` as a process against `db` and `sim`, polling every second,
/// serving on `listen`.
pub fn start_daemon(db: &str, sim: &Sim, listen: &str, extra: &[(&str, &str)]) -> Process {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_regsync"));
    command
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(simulator_env(db, sim))
        .env("REGSYNC__SYNC__POLL_SCHEDULE", "* * * * * *")
        .env("REGSYNC__SERVER__LISTEN", listen)
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in extra {
        command.env(k, v);
    }
    Process(command.spawn().expect("regsync run starts"))
}

/// Sends `signal` to a child process of this test.
pub fn send_signal(child: &std::process::Child, signal: Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in i32"));
    nix::sys::signal::kill(pid, signal).expect("the child can be signalled");
}
