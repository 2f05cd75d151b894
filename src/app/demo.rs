//! `regsync demo`: a full sync against the in-process simulator with an
//! embedded configuration — no Azure tenant, no platform account, and no
//! database setup (a throw-away PostgreSQL is started unless `DATABASE_URL`
//! is set).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use regsync_sim::{devdb, FaultRates, Sim, CLIENT_ID, CLIENT_SECRET, TENANT};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use super::{connect_and_migrate, context};
use crate::config::Settings;
use crate::store;
use crate::sync;

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Meetings the simulated platform lists.
    pub meetings: usize,
    /// People registered on the platform (spread over the active meetings
    /// open to everyone); 0 keeps the demo to meeting-level registration.
    pub registrants: usize,
    /// Keep the daemon and simulator up afterwards (until Ctrl-C).
    pub keep_running: bool,
    /// `DATABASE_URL`, if set: the demo then uses a `regsync_demo` database there.
    pub database_url: Option<String>,
    /// Show a progress bar.
    pub progress: bool,
}

/// The figures the summary table shows.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    /// What the database holds after the sync.
    pub figures: store::demo::DemoFigures,
    /// POSTs the simulator saw while a registration existed (must be 0).
    pub duplicate_posts: u64,
    /// The second act (with registrants): webinars, changes made in Teams,
    /// attendance.
    pub successor: Option<store::demo::SuccessorFigures>,
}

/// Runs the demo and returns the summary it printed.
///
/// # Errors
/// PostgreSQL could not be started or reached, or the sync could not run.
pub async fn demo(options: DemoOptions) -> anyhow::Result<DemoSummary> {
    let (url, _cluster) = match &options.database_url {
        Some(url) => (fresh_demo_database(url).await?, None),
        None => {
            eprintln!("starting a throw-away PostgreSQL (set DATABASE_URL to use your own)...");
            let cluster = tokio::task::spawn_blocking(devdb::Cluster::start).await??;
            (cluster.url().to_owned(), Some(cluster))
        }
    };
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.context("cannot start the simulator")?;
    seed(&sim, options.meetings);
    let mut settings = simulator_settings(&sim, &url);
    if options.registrants > 0 {
        seed_registrants(&sim, options.meetings, options.registrants);
        settings.registrants.enabled = true;
        settings.registrants.path = "/registrants".into();
        settings.writeback.url = "/meetings/{meeting_id}/registrants/{registrant_id}/join-link".into();
    }
    let pool = connect_and_migrate(&settings).await?;
    let ctx = context(Arc::new(settings.clone()), pool.clone(), Arc::default(), CancellationToken::new())?;

    let bar = if options.progress { ProgressBar::new(options.meetings as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} meetings settled {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let report = sync::tick(&ctx).await?;
    // Retries come due after their backoff: keep reconciling until every
    // meeting is settled (synced or failed), as `regsync run` would.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let counts = store::meetings::count_by_state(&pool).await?;
        let settled: i64 = counts.iter().filter(|c| c.state.is_settled()).map(|c| c.count).sum();
        let total: i64 = counts.iter().map(|c| c.count).sum();
        bar.set_length(total as u64);
        bar.set_position(settled as u64);
        let people = store::registrants::open_count(&pool).await?;
        if (settled == total && people == 0) || tokio::time::Instant::now() > deadline {
            break;
        }
        sync::reconcile_due(&ctx).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    let mut summary = summarize(&pool, &sim).await?;
    if options.registrants > 0 {
        eprintln!("second act: webinars that ended, changes made in Teams, attendance...");
        let successor_url = sibling_database(&url, "regsync_demo_successor").await?;
        summary.successor = Some(super::demo_successor::act(&successor_url).await?);
    }
    println!("{}", super::summary(&report).lines().next().unwrap_or_default());
    println!("{}", render(&summary));
    if options.keep_running {
        println!("The daemon keeps running: http://127.0.0.1:9090/metrics, /readyz; psql {url} -c 'SELECT * FROM ops.meeting_status'");
        println!("The simulator: http://{}/_sim/stats — Ctrl-C stops both.", sim.addr());
        super::run(settings).await?;
    } else {
        println!("Look further: rerun with --keep-running, then `psql <url> -c 'SELECT * FROM ops.meeting_status'`,");
        println!("or point `regsync once` at your own platform and tenant (see README, Configuration).");
    }
    Ok(summary)
}

/// The simulator's platform with a realistic mix: some meetings for
/// `organization`, some cancelled, two bad items, one organizer without an
/// application access policy, and a little throttling and loss at Graph.
fn seed(sim: &Sim, meetings: usize) {
    sim.seed(meetings.saturating_sub(1));
    let mut locked =
        regsync_sim::SimMeeting::new("evt-no-policy", "0f0f0f0f-0000-4000-8000-00000000dead", "MSpNoPolicy");
    locked.updated_at = "2026-11-28T12:00:00Z".into();
    sim.upsert_meeting(locked);
    sim.forbid_organizer("0f0f0f0f-0000-4000-8000-00000000dead");
    sim.push_raw_item(serde_json::json!({"id": "evt-bad-1", "organizer_id": "o", "allowed_registrant": "public"}));
    sim.push_raw_item(
        serde_json::json!({"id": "evt-bad-2", "organizer_id": "o", "online_meeting_id": "m", "status": "deleted"}),
    );
    sim.set_rates(FaultRates {
        throttle: 0.01,
        retry_after_secs: 1.0,
        error: 0.03,
        lost_response: 0.02,
        latency: Duration::from_millis(20),
        ..FaultRates::default()
    });
}

/// `n` people spread over the active meetings open to everyone, on one
/// flat listing.
fn seed_registrants(sim: &Sim, meetings: usize, n: usize) {
    let open: Vec<regsync_sim::SimMeeting> = (1..meetings)
        .map(regsync_sim::SimMeeting::generated)
        .filter(|m| m.status == "active" && m.allowed_registrant == "everyone")
        .collect();
    if open.is_empty() {
        return;
    }
    for i in 0..n {
        sim.upsert_registrant(regsync_sim::SimRegistrant::new(&open[i % open.len()].id, i / open.len() + 1));
    }
}

/// Settings that point regsync at a simulator, tuned for quick retries (the
/// demo's embedded configuration; the tests start from it too).
pub fn simulator_settings(sim: &Sim, url: &str) -> Settings {
    let mut s = Settings::default();
    s.database.url = Some(SecretString::from(url.to_owned()));
    let at = sim.endpoints();
    s.source.base_url = Some(at.platform);
    s.graph.base_url = at.graph;
    s.graph.authority_url = at.authority;
    s.graph.tenant_id = Some(TENANT.into());
    s.graph.client_id = Some(CLIENT_ID.into());
    s.graph.client_secret = Some(SecretString::from(CLIENT_SECRET));
    s.graph.max_concurrency = 8;
    // The simulator has no limit to respect, and its pages fail only when
    // a test says so: one more try is enough to show the retry.
    s.graph.max_requests_per_second = 0;
    s.source.max_requests_per_second = 0;
    s.source.page_retries = 1;
    s.graph.timeout_ms = 2_000;
    s.sync.lease_ttl_ms = 10_000;
    s.sync.backoff_base_ms = 200;
    s.sync.backoff_max_ms = 2_000;
    s
}

async fn fresh_demo_database(url: &str) -> anyhow::Result<String> {
    sibling_database(url, "regsync_demo").await.context("DATABASE_URL")
}

/// A new, empty database `name` on the server of `url`; its URL.
async fn sibling_database(url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::ConnectOptions as _;
    let options: sqlx::postgres::PgConnectOptions = url.parse().context("not a valid Postgres URL")?;
    let mut admin = options.clone().connect().await.context("cannot connect to the database server")?;
    store::recreate_database(&mut admin, name).await?;
    Ok(options.database(name).to_url_lossy().to_string())
}

async fn summarize(pool: &sqlx::PgPool, sim: &Sim) -> anyhow::Result<DemoSummary> {
    Ok(DemoSummary {
        figures: store::demo::figures(pool).await?,
        duplicate_posts: sim.stats().posts_while_registered,
        successor: None,
    })
}

/// The summary as a table.
pub fn render(summary: &DemoSummary) -> String {
    let s = &summary.figures;
    let mut out = String::new();
    let _ = writeln!(out, "+------------------------------+--------+");
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "| {name:<28} | {value:>6} |");
    };
    row("registered", s.registered.to_string());
    row("deregistered (cancelled)", s.deregistered.to_string());
    row("failed", s.failed.len().to_string());
    row("rejected platform items", s.rejected.to_string());
    for (call, n) in &s.graph_calls {
        row(&format!("Graph {call}"), n.to_string());
    }
    if s.registrants > 0 {
        row("registrants", s.registrants.to_string());
        row("registrants enrolled", s.enrolled.to_string());
        row("join links written back", s.written_back.to_string());
    }
    row("duplicate POSTs at Graph", summary.duplicate_posts.to_string());
    if let Some(v1) = &summary.successor {
        row("-- v1.0 webinars, ended --", String::new());
        row("webinar registrations", v1.registered.to_string());
        row("cancelled in Teams", v1.cancelled_in_teams.to_string());
        row("awaiting approval in Teams", v1.awaiting_approval.to_string());
        row("statuses told the platform", v1.statuses_told.to_string());
        row("attendance written back", v1.attendance_written_back.to_string());
        row("  of whom attended", v1.attended.to_string());
        row("walk-ins (unmatched)", v1.unmatched.to_string());
    }
    let _ = writeln!(out, "+------------------------------+--------+");
    for (id, reason) in &s.failed {
        let _ = writeln!(out, "failed {id}: {reason}");
    }
    out
}
