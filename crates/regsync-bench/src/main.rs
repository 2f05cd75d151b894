//! `regsync-bench`: measures regsync against bounds measured in the same run,
//! on the simulator (the code of `regsync-sim`, run as a separate process)
//! and a real PostgreSQL.
//!
//! Rows: first-sync ingest vs a raw bulk upsert of the same rows; a
//! steady-state poll cycle vs fetching and parsing the same pages; Graph
//! registration throughput vs min(rate limit, concurrency ÷ latency); Graph
//! calls per registration and per steady cycle; database round trips per
//! page; peak RSS; and a throttled run. See docs/performance.md.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use regsync::app::{connect_and_migrate, context};
use regsync::config::Settings;
use regsync::domain::{
    AllowedRegistrant, Desired, ExternalId, ExternalMeeting, MeetingRef, OnlineMeetingId, OrganizerId, OrganizerRef,
};
use regsync::sync::{self, Ctx};
use regsync::{source, store};
use regsync_sim::devdb;
use regsync_sim::{Endpoints, SimMeeting, CLIENT_ID, CLIENT_SECRET, TENANT};
use secrecy::SecretString;
use serde_json::json;
use sqlx::ConnectOptions as _;
use tokio_util::sync::CancellationToken;

mod batching;
mod incremental;
mod push;
mod registrants;
mod report;
mod sim;
use report::Report;
use sim::{requests, serve_simulator, sim_stats, start_simulator, total_requests};

/// Benchmarks regsync against bounds measured in the same run.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// Meetings the simulated platform lists.
    #[arg(long, default_value_t = 100_000)]
    meetings: usize,
    /// Latency of every simulated Graph request.
    #[arg(long, default_value_t = 50)]
    graph_latency_ms: u64,
    /// graph.max_concurrency.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// graph.max_requests_per_second (0: no pacing).
    #[arg(long, default_value_t = 0)]
    rate_limit: u32,
    /// source.page_size.
    #[arg(long, default_value_t = 1_000)]
    page_size: u32,
    /// Steady-state cycles measured (and as many fetch-only passes); the
    /// best of each counts.
    #[arg(long, default_value_t = 5)]
    steady_cycles: usize,
    /// Register only the first N meetings at first sync and record the rest
    /// as synced (a deployment's steady state), so a run of a million
    /// meetings fits in minutes (0: register all).
    #[arg(long, default_value_t = 0)]
    register_sample: usize,
    /// Pushed changes timed to their registration, with one replica and
    /// with three (0: not measured).
    #[arg(long, default_value_t = 100)]
    push_samples: usize,
    /// Meetings registered under 20 % throttling.
    #[arg(long, default_value_t = 300)]
    throttle_meetings: usize,
    /// The platform lists organizer e-mails and Teams join links instead of
    /// Graph's ids, so the first sync resolves each through Graph.
    #[arg(long)]
    resolve: bool,
    /// People the platform registered (spread over the active meetings open
    /// to everyone), enrolled after the meetings: registrants per second,
    /// Graph calls per registrant and the steady cycle (0: not measured).
    #[arg(long, default_value_t = 0)]
    registrants: usize,
    /// Lookups sent one request each and in `$batch`es of 20, unpaced and at
    /// regsync's default pace, to see whether batching pays (0: not measured).
    #[arg(long, default_value_t = 150)]
    batch_lookups: usize,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also fail when a timing ratio misses its bound.
    #[arg(long)]
    check_ratios: bool,
    /// Internal: serve the simulator in this process (the benchmark runs
    /// itself this way, so its memory and CPU are not the daemon's).
    #[arg(long, hide = true)]
    serve_simulator: bool,
}

/// Statements sqlx sent (it reports each one under the `sqlx::query` target).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

struct CountStatements;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountStatements {
    fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        STATEMENTS.fetch_add(1, Ordering::Relaxed);
    }
}

fn to_domain(m: &SimMeeting) -> ExternalMeeting {
    ExternalMeeting {
        external_id: ExternalId(m.id.clone()),
        organizer: OrganizerRef::Id(OrganizerId(m.organizer_id.clone())),
        online_meeting: MeetingRef::Id(OnlineMeetingId(m.online_meeting_id.clone())),
        allowed_registrant: AllowedRegistrant::parse(&m.allowed_registrant).unwrap_or(AllowedRegistrant::Everyone),
        desired: if m.status == "cancelled" { Desired::Unregistered } else { Desired::Registered },
        updated_at: None,
        times: Default::default(),
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn settings_for(args: &Args, sim: SocketAddr, db: &str) -> Settings {
    let at = Endpoints::at(sim);
    let mut s = Settings::default();
    s.database.url = Some(SecretString::from(db.to_owned()));
    s.database.max_connections = (args.concurrency as u32 + 4).max(10);
    s.source.base_url = Some(at.platform);
    s.source.page_size = args.page_size;
    // The simulator has no pace to respect: ingest is measured, not paced.
    s.source.max_requests_per_second = 0;
    s.graph.base_url = at.graph;
    s.graph.authority_url = at.authority;
    s.graph.tenant_id = Some(TENANT.into());
    s.graph.client_id = Some(CLIENT_ID.into());
    s.graph.client_secret = Some(SecretString::from(CLIENT_SECRET));
    s.graph.max_concurrency = args.concurrency;
    s.graph.max_requests_per_second = args.rate_limit;
    s.graph.timeout_ms = 10_000;
    s.sync.backoff_base_ms = 100;
    s.sync.backoff_max_ms = 1_000;
    s.sync.claim_batch = args.concurrency as u32;
    if args.resolve {
        s.source.fields.organizer_upn = "/organizer_email".into();
        s.source.fields.join_url = "/join_url".into();
    }
    s
}

pub(crate) async fn new_ctx(settings: &Settings) -> anyhow::Result<Arc<Ctx>> {
    let pool = connect_and_migrate(settings).await?;
    context(Arc::new(settings.clone()), pool, Arc::default(), CancellationToken::new())
}

/// Reconciles until every meeting is settled, waiting out holds and backoff.
pub(crate) async fn drain(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3_600);
    loop {
        sync::reconcile_due(ctx).await?;
        let open: i64 = store::meetings::count_by_state(&ctx.pool)
            .await?
            .iter()
            .filter(|c| matches!(c.state.as_str(), "pending" | "retrying" | "in_flight"))
            .map(|c| c.count)
            .sum();
        if open == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{open} meetings never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    use tracing_subscriber::prelude::*;
    let statements = tracing_subscriber::filter::Targets::new().with_target("sqlx::query", tracing::Level::TRACE);
    let _ = tracing_subscriber::registry()
        .with(CountStatements.with_filter(statements))
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(tracing_subscriber::EnvFilter::new("error")),
        )
        .try_init();
    if args.serve_simulator {
        return match serve_simulator(&args).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("regsync-bench simulator: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match bench(args).await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("regsync-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bench(args: Args) -> anyhow::Result<bool> {
    // Arrange: PostgreSQL, a fresh database, the simulator.
    let cluster;
    let server = match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => url,
        None => {
            cluster = tokio::task::spawn_blocking(devdb::Cluster::start).await??;
            cluster.url().to_owned()
        }
    };
    let admin_options: sqlx::postgres::PgConnectOptions = server.parse().context("DATABASE_URL")?;
    store::recreate_database(&mut admin_options.connect().await?, "regsync_bench").await?;
    let db = admin_options.database("regsync_bench").to_url_lossy().to_string();
    let sim = start_simulator(&args)?;
    let http = reqwest::Client::new();
    let settings = settings_for(&args, sim.addr, &db);

    // Bound 1: the raw bulk upsert of the same rows, page by page (made a
    // page at a time, so the bound's memory is not counted as regsync's).
    let ctx = new_ctx(&settings).await?;
    store::bench::prepare_raw_table(&ctx.pool).await?;
    let page_size = args.page_size.max(1) as usize;
    let started = Instant::now();
    for first in (1..=args.meetings).step_by(page_size) {
        let page: Vec<ExternalMeeting> =
            (first..(first + page_size).min(args.meetings + 1)).map(|i| to_domain(&SimMeeting::generated(i))).collect();
        store::bench::raw_upsert_page(&ctx.pool, &page).await?;
    }
    let raw_secs = started.elapsed().as_secs_f64();

    // Ingest: regsync's first poll; sqlx reports every statement it sends.
    let statements_before = STATEMENTS.load(Ordering::Relaxed);
    let started = Instant::now();
    let poll = sync::ingest::poll(&ctx).await?;
    let ingest_secs = started.elapsed().as_secs_f64();
    let per_page = (STATEMENTS.load(Ordering::Relaxed) - statements_before) as f64 / f64::from(poll.pages.max(1));
    let first_seen_cancelled = match args.register_sample {
        0 => (args.meetings / 10) as f64,
        sample => store::bench::presync_all_but(&ctx.pool, sample as i64).await? as f64,
    };

    // Registration throughput with the whole backlog due.
    let before = sim_stats(&http, &sim.base).await?;
    let statements_before = STATEMENTS.load(Ordering::Relaxed);
    let started = Instant::now();
    drain(&ctx).await?;
    let register_secs = started.elapsed().as_secs_f64();
    let register_statements = STATEMENTS.load(Ordering::Relaxed) - statements_before;
    let after = sim_stats(&http, &sim.base).await?;
    let registered = (after.registrations - before.registrations) as f64;
    // Every 10th generated meeting is cancelled: regsync first meets it so
    // and looks it up once (a registration someone else left behind would
    // be removed). Those lookups (404, under no faults) are counted apart.
    let lookups = requests(&after, "GET 404") - requests(&before, "GET 404");
    // With --resolve: a user lookup per organizer, a meeting lookup per
    // active meeting, at most (the five generated organizers).
    let resolutions = after.lookups - before.lookups;
    let resolution = args.resolve.then(|| report::Resolution {
        lookups: resolutions,
        most: 5 + registered as u64,
        registered: registered as u64,
    });
    let calls_per_registration =
        (total_requests(&after) - total_requests(&before) - lookups - resolutions) as f64 / registered.max(1.0);
    let lookups_per_cancelled = if first_seen_cancelled > 0.0 { lookups as f64 / first_seen_cancelled } else { 1.0 };
    let latency = Duration::from_millis(args.graph_latency_ms.max(1)).as_secs_f64();
    let concurrency_bound = args.concurrency as f64 / latency;
    let throughput_bound =
        if args.rate_limit == 0 { concurrency_bound } else { concurrency_bound.min(f64::from(args.rate_limit)) };
    // Meetings settled by a Graph call: registered, or looked up first
    // seen cancelled. Each takes a Graph slot for one latency.
    let throughput = (registered + (lookups + resolutions) as f64) / register_secs;

    // Steady state: a full cycle with nothing changed vs fetching and
    // parsing the same pages. Best of each, interleaved.
    let source = source::Client::new(
        &settings.source,
        settings.default_allowed_registrant(),
        settings.graph.target.event_kind(),
    )?;
    let (mut fetch_secs, mut steady_secs, mut steady_calls) = (f64::MAX, f64::MAX, 0);
    for _ in 0..args.steady_cycles.max(1) {
        let started = Instant::now();
        let (mut request, mut listed) = (source::PageRequest::First, 0);
        let listing = source.meeting_listing(None);
        loop {
            let page = source.fetch_page(&listing, &request).await?;
            listed += page.items as u64;
            match source.next(&listing, &request, &page, listed) {
                source::Next::Page(next) => request = next,
                _ => break,
            }
        }
        fetch_secs = fetch_secs.min(started.elapsed().as_secs_f64());
        let before = total_requests(&sim_stats(&http, &sim.base).await?);
        let started = Instant::now();
        sync::tick(&ctx).await?;
        steady_secs = steady_secs.min(started.elapsed().as_secs_f64());
        steady_calls += total_requests(&sim_stats(&http, &sim.base).await?) - before;
    }

    let incremental = incremental::cycle(&settings, &http, &sim).await?;
    let registrants =
        if args.registrants > 0 { Some(registrants::bench(&args, &settings, &http, &sim).await?) } else { None };
    let batching = match args.batch_lookups {
        0 => Vec::new(),
        n => batching::measure(&http, &sim, n.min(args.meetings), args.concurrency).await?,
    };

    // Throttled: new meetings registered under 20 % 429s.
    http.post(format!("{}/_sim/rates", sim.base))
        .json(&json!({"throttle": 0.2, "retry_after_secs": 0.2, "latency": args.graph_latency_ms}))
        .send()
        .await?
        .error_for_status()?;
    for i in 0..args.throttle_meetings {
        let m = SimMeeting::new(
            &format!("bench-thr-{i}"),
            "0f0f0f0f-0000-4000-8000-0000000000aa",
            &format!("MSpThr{i:06}"),
        );
        http.post(format!("{}/_sim/meetings", sim.base)).json(&m).send().await?.error_for_status()?;
    }
    let before = sim_stats(&http, &sim.base).await?;
    sync::ingest::poll(&ctx).await?;
    drain(&ctx).await?;
    let after = sim_stats(&http, &sim.base).await?;
    let throttled_registered = (after.registrations - before.registrations) as f64;
    let throttled_calls = (total_requests(&after) - total_requests(&before) - (after.lookups - before.lookups)) as f64
        / throttled_registered.max(1.0);
    let violations = after.requests_inside_retry_after - before.requests_inside_retry_after;

    // Pushed changes, last: the replicas run until the benchmark exits.
    let push = match args.push_samples {
        0 => None,
        samples => {
            http.post(format!("{}/_sim/rates", sim.base))
                .json(&json!({"latency": args.graph_latency_ms}))
                .send()
                .await?
                .error_for_status()?;
            let mut replicas = push::Replicas::start(&settings, &ctx.pool).await?;
            let one = replicas.measure(&http, &sim, &ctx.pool, samples).await?;
            replicas.grow_to(3, &ctx.pool).await?;
            Some((one, replicas.measure(&http, &sim, &ctx.pool, samples).await?))
        }
    };

    let report = Report {
        args: args.clone(),
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        meetings_seen: poll.seen,
        pages: poll.pages,
        ingest_rate: args.meetings as f64 / ingest_secs,
        raw_rate: args.meetings as f64 / raw_secs,
        steady_secs,
        fetch_secs,
        throughput,
        throughput_bound,
        calls_per_registration,
        lookups_per_cancelled,
        resolution,
        steady_calls,
        incremental,
        round_trips_per_page: per_page,
        round_trips_per_registration: register_statements as f64 / registered.max(1.0),
        peak_rss_mib: peak_rss_mib(),
        throttled_calls,
        violations,
        registrants,
        push,
        batching,
    };
    report.print();
    Ok(report.passes())
}
