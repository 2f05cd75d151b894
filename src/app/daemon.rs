//! `regsync run`: polls on the cron schedule, reconciles due retries as they
//! come due, serves health and metrics, and stops gracefully on SIGTERM or
//! SIGINT (a second signal, or `shutdown.grace_secs` passing, stops at once).

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::context;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::server::{self, Readiness};
use crate::store;
use crate::sync::{self, Ctx};

/// Runs the daemon until a signal stops it.
///
/// # Errors
/// Start-up failed (database, address in use, bad schedule), or the grace
/// period passed with work still in flight.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let first_signal = shutdown.clone();
    tracker.spawn(async move {
        wait_for_signal().await;
        first_signal.cancel();
    });
    // The pool connects lazily: health answers (and readiness says why not)
    // while the database is still away.
    let pool = store::connect(&settings.database)?;
    let metrics = Arc::new(Metrics::default());
    let readiness = Arc::new(Readiness::new(std::time::Duration::from_secs(settings.server.ready_max_poll_age_secs)));
    let ctx = context(settings.clone(), pool.clone(), metrics.clone(), shutdown.clone())?;

    serve_health(&settings, readiness.clone(), metrics, &tracker, shutdown.clone()).await?;
    if settings.hooks.enabled() {
        serve_hooks(ctx.clone(), &tracker, shutdown.clone()).await?;
    }
    if !migrate_when_reachable(&pool, settings.database.migrate, &shutdown).await? {
        tracker.close();
        tracker.wait().await;
        return Ok(());
    }

    let poll_due = Arc::new(Notify::new());
    let mut scheduler = poll_bell(&settings.sync.poll_schedule, poll_due.clone()).await?;

    tracker.spawn(heartbeat(ctx.clone()));
    tracker.spawn(follow_ups(ctx.clone()));
    let mut engine = tracker.spawn(engine(ctx, poll_due));
    tracker.close();

    // The engine ends only on shutdown: if it ends (or panics) before, the
    // process must not live on answering health checks with nothing behind.
    let engine_ended = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        ended = &mut engine => Some(ended),
    };
    // The engine also ends when shutdown begins: only an end before it fails.
    if let Some(ended) = engine_ended.filter(|_| !shutdown.is_cancelled()) {
        shutdown.cancel();
        readiness.stopping();
        let why = match ended {
            Err(e) if e.is_panic() => "the engine panicked (a bug: please report it with the log above)",
            _ => "the engine stopped unexpectedly",
        };
        anyhow::bail!("{why}; regsync exits so that its supervisor restarts it");
    }
    tracing::info!("stopping: no new claims; calls in flight finish and are recorded");
    readiness.stopping();
    let _ = scheduler.shutdown().await;
    tokio::select! {
        _ = tracker.wait() => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        _ = tokio::time::sleep(settings.shutdown.grace()) => {
            anyhow::bail!("shutdown.grace_secs passed with work in flight; its leases expire and the next owner looks the outcomes up")
        }
        _ = wait_for_signal() => anyhow::bail!("second signal: stopped at once"),
    }
}

/// Serves `/healthz`, `/readyz` and `/metrics` until shutdown, from a pool
/// of its own: no scrape can take a connection from the engine.
async fn serve_health(
    settings: &Settings,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&settings.server.listen)
        .await
        .with_context(|| format!("cannot listen on server.listen = {}", settings.server.listen))?;
    tracing::info!(addr = %settings.server.listen, "serving /healthz, /readyz and /metrics");
    let router = server::router(store::connect_observer(&settings.database)?, readiness, metrics);
    tracker.spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "health server failed");
        }
    });
    Ok(())
}

/// Serves `POST /hooks/platform` on `hooks.listen`, apart from `/metrics`,
/// until shutdown.
async fn serve_hooks(ctx: Arc<Ctx>, tracker: &TaskTracker, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = ctx.settings.hooks.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on hooks.listen = {listen}"))?;
    tracing::info!(addr = %listen, "serving POST /hooks/platform");
    let router = crate::hooks::router(ctx).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tracker.spawn(async move {
        if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "webhook listener failed");
        }
    });
    Ok(())
}

/// The scheduler only rings a bell on `schedule`; the engine loop polls, so
/// polls never overlap and shutdown is ours, not the scheduler's.
async fn poll_bell(schedule: &str, bell: Arc<Notify>) -> anyhow::Result<JobScheduler> {
    let scheduler = JobScheduler::new().await.context("cannot start the scheduler")?;
    let job = Job::new_async(schedule, move |_, _| {
        let bell = bell.clone();
        Box::pin(async move { bell.notify_one() })
    })
    .context("sync.poll_schedule")?;
    scheduler.add(job).await.context("cannot schedule polls")?;
    scheduler.start().await.context("cannot start the scheduler")?;
    Ok(scheduler)
}

/// Applies migrations (or, with `migrate` false, checks they were applied),
/// retrying while the database is away: a replica started during a
/// database outage waits for it instead of exiting. False when shutdown
/// came first.
///
/// # Errors
/// A failure waiting cannot mend: TLS or connection settings, a missing
/// migration.
async fn migrate_when_reachable(
    pool: &sqlx::PgPool,
    migrate: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut delay = std::time::Duration::from_millis(500);
    loop {
        let prepare = async {
            if migrate {
                store::migrate(pool).await
            } else {
                store::check_migrated(pool).await
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            migrated = prepare => match migrated {
                Ok(()) => return Ok(true),
                Err(e) if e.is_connection_setup() => {
                    return Err(anyhow::Error::new(e).context("cannot connect to the database (check database.url and its sslmode, sslrootcert)"));
                }
                Err(e) => tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not available; waiting"),
            },
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(10));
    }
}

/// Polls when the bell rings (and once at start) if no other replica has
/// polled for this tick, and reconciles at once when any replica announces
/// due rows (`LISTEN regsync_due`: a poll's changes, a pushed change, an
/// operator's retry), and every `sync.reconcile_interval_ms` for retries
/// coming due and announcements lost.
async fn engine(ctx: Arc<Ctx>, poll_due: Arc<Notify>) {
    poll_due.notify_one();
    let mut announced = store::push::DueListener::new(ctx.pool.clone());
    announced.start().await;
    let poll_window = ctx.settings.sync.poll_period() / 2;
    let mut interval = tokio::time::interval(ctx.settings.sync.reconcile_interval());
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Crash-matrix hook: the engine dies (a panic) while the process lives.
        fail_point!("engine-loop");
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => return,
            _ = poll_due.notified() => {
                match store::runs::claim_poll(&ctx.pool, ctx.replica, poll_window).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!("another replica polled for this tick");
                        continue;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim the poll; retrying at the next tick");
                        continue;
                    }
                }
                let started = Instant::now();
                match sync::tick(&ctx).await {
                    Ok(report) => {
                        ctx.metrics.poll(report.poll.result(), started.elapsed());
                        tracing::info!("{}", super::summary(&report).replace('\n', "; "));
                    }
                    Err(e) => {
                        ctx.metrics.poll("failed", started.elapsed());
                        tracing::error!(error = %e, "poll cycle failed; retrying at the next scheduled poll");
                    }
                }
            }
            _ = announced.wait(ctx.settings.sync.reconcile_interval()) => reconcile(&ctx).await,
            _ = interval.tick() => reconcile(&ctx).await,
        }
    }
}

async fn reconcile(ctx: &Arc<Ctx>) {
    if let Err(e) = sync::reconcile_due(ctx).await {
        tracing::error!(error = %e, "reconcile failed; retrying shortly");
    }
}

/// How often a replica asks whether a periodic job is due; each job's own
/// period (in the database) decides whether it runs.
const FOLLOW_UP_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// The periodic work beside the engine — the status read-back and the
/// attendance reads — each run by one replica per period, off the engine's
/// loop so a long read never delays a reconcile.
async fn follow_ups(ctx: Arc<Ctx>) {
    let mut every = tokio::time::interval(FOLLOW_UP_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = every.tick() => {
                sync::follow_ups(&ctx).await;
            }
        }
    }
}

/// Keeps this process's row in `ops.replicas` fresh until shutdown.
async fn heartbeat(ctx: Arc<Ctx>) {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let mut every = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            _ = every.tick() => {
                if let Err(e) = store::dashboard::heartbeat(&ctx.pool, ctx.replica, &host, env!("CARGO_PKG_VERSION")).await {
                    tracing::warn!(error = %e, "cannot record the heartbeat; retrying");
                }
            }
        }
    }
}

/// How often a replica refreshes its row; `ops.replicas` calls it alive for
/// three times as long.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(10);

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
