//! The simulator as a child process of the benchmark (so its memory and
//! CPU are not counted as regsync's), and what the benchmark asks of it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use regsync_sim::{SimMeeting, Stats};

use crate::Args;

/// The simulator process; killed on drop.
pub struct SimProcess {
    child: Child,
    pub addr: SocketAddr,
    /// `http://{addr}`, for its `/_sim` control endpoints.
    pub base: String,
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator side: seeded, on a loopback port, until stdin closes (the
/// benchmark exits or dies).
pub async fn serve_simulator(args: &Args) -> anyhow::Result<()> {
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await?;
    sim.seed(args.meetings);
    sim.list_by_reference(args.resolve);
    let open: Vec<SimMeeting> = (1..=args.meetings)
        .map(SimMeeting::generated)
        .filter(|m| m.status == "active" && m.allowed_registrant == "everyone")
        .collect();
    for i in 0..args.registrants.min(open.len() * 1_000) {
        sim.upsert_registrant(regsync_sim::SimRegistrant::new(&open[i % open.len()].id, i / open.len() + 1));
    }
    sim.set_rates(regsync_sim::FaultRates {
        latency: Duration::from_millis(args.graph_latency_ms),
        ..Default::default()
    });
    println!("simulator listening on {}", sim.addr());
    tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await??;
    Ok(())
}

pub fn start_simulator(args: &Args) -> anyhow::Result<SimProcess> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(&exe)
        .args(["--serve-simulator", "--meetings", &args.meetings.to_string()])
        .args(["--graph-latency-ms", &args.graph_latency_ms.to_string()])
        .args(args.resolve.then_some("--resolve"))
        .args(["--registrants", &args.registrants.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start the simulator ({})", exe.display()))?;
    let stdout = child.stdout.take().context("simulator stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("the simulator printed nothing")??;
    std::thread::spawn(move || lines.for_each(drop));
    let addr: SocketAddr = first
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .parse()
        .with_context(|| format!("the simulator printed {first:?}, not its address"))?;
    Ok(SimProcess { child, addr, base: format!("http://{addr}") })
}

pub async fn sim_stats(http: &reqwest::Client, base: &str) -> anyhow::Result<Stats> {
    Ok(http.get(format!("{base}/_sim/stats")).send().await?.error_for_status()?.json().await?)
}

/// Every Graph request: registration calls and lookups.
pub fn total_requests(stats: &Stats) -> u64 {
    stats.requests.values().sum::<u64>() + stats.lookups
}

pub fn requests(stats: &Stats, method_and_status: &str) -> u64 {
    stats.requests.get(method_and_status).copied().unwrap_or(0)
}

/// Changes every `every`-th meeting of the platform now.
pub async fn touch(http: &reqwest::Client, base: &str, every: usize) -> anyhow::Result<()> {
    http.post(format!("{base}/_sim/meetings/touch?every={every}")).send().await?.error_for_status()?;
    Ok(())
}
