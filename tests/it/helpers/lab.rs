//! A lab network: network namespaces of the run's own, each joined to this
//! process's namespace (the router) by a veth pair on a private subnet,
//! `10.213.{host}.0/24` — the router is `.1`, the namespace `.2`. A
//! namespace has no route beyond its pair, so whatever it reaches, it
//! reaches through the router: the relays (`helpers::relay`) listening on
//! the router's addresses, whose faults are latency, cuts and half-open
//! links, and the router's packet filter, which drops packets at random.
//! Processes and servers are put in a namespace by starting them from a
//! thread that joined it ([`Lab::within`], [`Lab::runtime`]).
//!
//! The namespaces go when the lab is dropped, with every process in them;
//! if this process is killed instead, a reaper (`setsid sh`) does the same
//! as soon as it sees this process gone.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

use super::netns::{enter, ip};

/// The namespaces, their veth pairs and their reaper.
pub struct Lab {
    names: Vec<String>,
    /// The packet loss set on each pair, to take it off again.
    loss: std::sync::Mutex<Vec<Option<f64>>>,
    /// Kills what is left in the namespaces, deletes them (the veth pairs go
    /// with them) and the lab's packet rules: run on drop, or by the reaper.
    cleanup: String,
    reaper: Child,
}

/// Drops packets on a veth pair's router end at random (`iptables`'
/// `statistic` match): `INPUT` from the namespace, `OUTPUT` to it.
fn packet_loss(interface: &str, probability: f64, on: bool) {
    for (chain, way) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
        let probability = format!("{probability:.3}");
        let rule = [chain, way, interface, "-m", "statistic", "--mode", "random", "--probability", &probability];
        let mut command = Command::new("iptables");
        command.arg("-w").arg(if on { "-A" } else { "-D" }).args(rule).args(["-j", "DROP"]);
        let status = command.stderr(Stdio::null()).status().expect("iptables (the lab's packet loss)");
        assert!(status.success() || !on, "iptables could not add {rule:?}");
    }
}

impl Lab {
    /// `hosts` namespaces, numbered from 0.
    pub fn new(hosts: u8) -> Self {
        let pid = std::process::id();
        let names: Vec<String> = (0..hosts).map(|h| format!("regsync-lab{pid}-{h}")).collect();
        let cleanup = format!(
            "for ns in {all}; do \
             for p in $(ip netns pids $ns 2>/dev/null); do kill -9 $p; done; ip netns del $ns 2>/dev/null; done; \
             iptables -w -S | grep -F 'rl{pid}h' | sed 's/^-A/-D/' | while read -r rule; do iptables -w $rule; done",
            all = names.join(" ")
        );
        // The reaper cleans up once this process is gone, however it ended.
        let reaper = Command::new("setsid")
            .args(["sh", "-c", &format!("while kill -0 {pid} 2>/dev/null; do sleep 1; done; {cleanup}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setsid sh (the lab's reaper)");
        for (h, name) in names.iter().enumerate() {
            let router_end = Self::interface_of(h as u8);
            ip(&["netns", "add", name]);
            ip(&["link", "add", &router_end, "type", "veth", "peer", "name", "eth0", "netns", name]);
            ip(&["addr", "add", &format!("{}/24", Self::router_address(h as u8)), "dev", &router_end]);
            ip(&["link", "set", &router_end, "up"]);
            let inside = format!("{}/24", Self::address(h as u8));
            ip(&["netns", "exec", name, "ip", "addr", "add", &inside, "dev", "eth0"]);
            ip(&["netns", "exec", name, "ip", "link", "set", "eth0", "up"]);
            ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        }
        let loss = std::sync::Mutex::new(vec![None; names.len()]);
        Self { names, loss, cleanup, reaper }
    }

    fn interface_of(host: u8) -> String {
        format!("rl{}h{host}", std::process::id())
    }

    /// A namespace's own address.
    pub fn address(host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 213, host, 2))
    }

    /// The router's address on a namespace's pair: where it reaches the router.
    pub fn router_address(host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 213, host, 1))
    }

    /// `port` on the router, as namespace `host` reaches it.
    pub fn on_router(host: u8, port: u16) -> SocketAddr {
        SocketAddr::new(Self::router_address(host), port)
    }

    /// Runs `f` on a thread that joined namespace `host`: a process it
    /// starts, and a socket it opens, are in that namespace.
    pub fn within<T: Send>(&self, host: u8, f: impl FnOnce() -> T + Send) -> T {
        let name = &self.names[usize::from(host)];
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    enter(name);
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// A runtime whose threads live in namespace `host`: what it binds and
    /// connects is there. Dropping it stops them.
    pub fn runtime(&self, host: u8) -> Inside {
        // Threads the runtime starts inherit the namespace of the thread
        // that builds it.
        let runtime = self.within(host, || {
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime")
        });
        Inside(Some(runtime))
    }

    /// Drops this share of the packets between namespace `host` and the
    /// router, both ways, until [`Lab::no_loss`].
    pub fn lose_packets(&self, host: u8, probability: f64) {
        self.no_loss(host);
        packet_loss(&Self::interface_of(host), probability, true);
        self.loss.lock().unwrap()[usize::from(host)] = Some(probability);
    }

    /// No packet dropped on purpose between namespace `host` and the router.
    pub fn no_loss(&self, host: u8) {
        if let Some(probability) = self.loss.lock().unwrap()[usize::from(host)].take() {
            packet_loss(&Self::interface_of(host), probability, false);
        }
    }
}

/// A runtime in a namespace; dropped from async code (a test's), it stops
/// in the background.
pub struct Inside(Option<tokio::runtime::Runtime>);

impl Inside {
    /// Runs `task` there.
    pub fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().expect("running").spawn(task)
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.reaper.kill();
        let _ = self.reaper.wait();
        let _ = Command::new("sh").args(["-c", &self.cleanup]).stderr(Stdio::null()).status();
    }
}
