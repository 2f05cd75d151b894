//! A network the test can cut: a network namespace of its own, whose
//! loopback carries the traffic between regsync and the simulator, both run
//! inside it (PostgreSQL is reached over its Unix socket, which no network
//! fault touches). Taking that loopback down drops every packet, as a
//! partition does: TCP keeps what it sent and retransmits it, so bytes a
//! client gave up on can still arrive once the path heals. The namespace is
//! removed when the value is dropped.

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A network namespace with its loopback up.
pub struct Netns {
    name: String,
}

/// Runs `ip` with `args`; a failure fails the test.
pub(super) fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("the `ip` command (iproute2)");
    assert!(status.success(), "ip {}: {status} (the network tests run as root)", args.join(" "));
}

/// Moves the calling thread into namespace `name` (`ip netns add`): the
/// sockets it opens, the threads and processes it starts, are there.
pub(super) fn enter(name: &str) {
    let namespace = std::fs::File::open(format!("/var/run/netns/{name}")).expect("the namespace");
    nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).expect("join the namespace");
}

impl Netns {
    /// A fresh namespace.
    pub fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!("regsync-t{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        ip(&["netns", "add", &name]);
        let net = Self { name };
        net.heal();
        net
    }

    /// Runs `test` to its end on a runtime whose threads all live in the
    /// namespace: every socket it opens is on the namespace's network.
    /// A panic in it is this call's.
    pub fn run<F>(&self, test: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let name = self.name.clone();
        let inside = std::thread::spawn(move || {
            enter(&name);
            // Threads the runtime starts inherit the namespace from this one.
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
            runtime.block_on(test)
        });
        inside.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// What cuts and heals the namespace's network, for the test inside.
    pub fn switch(&self) -> Switch {
        Switch { name: self.name.clone() }
    }

    fn heal(&self) {
        self.switch().heal();
    }
}

/// Cuts and heals one namespace's network.
#[derive(Clone)]
pub struct Switch {
    name: String,
}

impl Switch {
    /// Drops every packet inside the namespace.
    pub fn cut(&self) {
        ip(&["netns", "exec", &self.name, "ip", "link", "set", "lo", "down"]);
    }

    /// Lets packets through again.
    pub fn heal(&self) {
        ip(&["netns", "exec", &self.name, "ip", "link", "set", "lo", "up"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// `url` (a database on the test server) reached over the server's Unix
/// socket instead: what a test inside a namespace can still reach.
pub fn over_unix_socket(url: &str) -> String {
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a Postgres URL");
    let port = options.get_port();
    let dir = super::socket_dirs()
        .into_iter()
        .find(|dir| dir.join(format!(".s.PGSQL.{port}")).exists())
        .expect("the test server's Unix socket");
    let dir = dir.display();
    let user = options.get_username();
    let database = options.get_database().expect("a database");
    format!("postgres://{user}@localhost:{port}/{database}?host={dir}")
}
