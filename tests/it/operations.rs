//! What operators rely on while regsync runs: readiness and metrics that
//! tell the deployment's truth, a daemon that never lingers as a zombie,
//! and a health server that cannot starve the engine.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use regsync::server::{self, Readiness};
use regsync_sim::{PageFault, Sim};

use crate::helpers::{eventually, exited_within, free_port, fresh_database, meeting, spawn_app, start_daemon};

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

#[tokio::test]
async fn a_platform_that_is_down_is_no_successful_poll() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.upsert_meeting(meeting(1));
    sim.fail_page(0, PageFault::ServerError);
    let listen = format!("127.0.0.1:{}", free_port());
    let _daemon = start_daemon(&db, &sim, &listen, &[]);
    let pool = sqlx::PgPool::connect(&db).await.expect("db");

    // Three polls, each refused by the platform.
    let three_polls = eventually(Duration::from_secs(60), async || {
        let polls: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE finished_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .ok();
        polls.is_some_and(|n| n >= 3)
    })
    .await;
    assert!(three_polls, "no three polls in a minute");
    let (status, body) = get(&format!("http://{listen}/readyz")).await.expect("readyz");
    let (_, metrics) = get(&format!("http://{listen}/metrics")).await.expect("metrics");

    assert_eq!(status, 503, "{body}");
    // Finished polls only: one may be running now (each asks its page again
    // a few times before giving up).
    let successes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ops.sync_runs WHERE status IN ('complete', 'partial')")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(successes, 0, "a poll that read no page failed");
    let last_poll = metrics.lines().find(|l| l.starts_with("regsync_last_successful_poll_timestamp_seconds "));
    assert!(last_poll.is_none_or(|l| l.ends_with(" 0.0")), "{last_poll:?}");
}

#[tokio::test]
async fn a_replica_that_did_not_poll_reports_the_deployments_last_poll() {
    let app = spawn_app().await;
    app.sim.upsert_meeting(meeting(1));
    app.tick().await; // another replica's poll
    let router = server::router(app.pool.clone(), Arc::new(Readiness::new(Duration::from_secs(600))), Arc::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });

    let (status, body) = get(&format!("http://{addr}/readyz")).await.expect("readyz");
    let (_, metrics) = get(&format!("http://{addr}/metrics")).await.expect("metrics");

    assert_eq!(status, 200, "{body}");
    let polled_at: f64 = app.scalar("SELECT extract(epoch FROM max(finished_at))::int8 FROM sync_runs").await as f64;
    let reported: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("regsync_last_successful_poll_timestamp_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("the gauge");
    assert!((reported - polled_at).abs() < 2.0, "{reported} vs {polled_at}");
}

#[tokio::test]
async fn a_scrape_flood_is_answered_while_the_engines_pool_is_exhausted() {
    let app = spawn_app().await;
    app.sim.seed(10);
    app.tick().await;
    let engine = {
        let mut s = app.settings.database.clone();
        s.max_connections = 2;
        s.acquire_timeout_ms = 500;
        regsync::store::connect(&s).expect("pool")
    };
    let hostages = [engine.acquire().await.expect("one"), engine.acquire().await.expect("two")];
    let observer = regsync::store::connect_observer(&app.settings.database).expect("its own pool");
    let router = server::router(observer, Arc::new(Readiness::new(Duration::from_secs(600))), Arc::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });

    let scrapes: Vec<_> = (0..50).map(|_| tokio::spawn(get_owned(format!("http://{addr}/metrics")))).collect();
    let mut answered = 0;
    for scrape in scrapes {
        let (status, body) = scrape.await.expect("joined").expect("answered");
        assert_eq!(status, 200);
        answered += usize::from(body.contains("regsync_meetings{state=\"synced\"} 10"));
    }

    assert_eq!(answered, 50, "every scrape carried the deployment's counts");
    drop(hostages);
}

async fn get_owned(url: String) -> Option<(u16, String)> {
    get(&url).await
}

#[cfg(feature = "failpoints")]
#[tokio::test]
async fn a_dead_engine_ends_the_daemon_with_a_failure() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let listen = format!("127.0.0.1:{}", free_port());
    let mut daemon = start_daemon(&db, &sim, &listen, &[("FAILPOINTS", "engine-loop=panic")]);

    let exit = exited_within(&mut daemon.0, Duration::from_secs(60)).await;

    assert!(exit.is_some_and(|s| !s.success()), "the daemon ended with a failure: {exit:?}");
}

#[tokio::test]
async fn settings_that_would_stop_the_engine_are_refused_at_start_naming_the_key() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    for (key, value, named) in [
        ("REGSYNC__SYNC__RECONCILE_INTERVAL_MS", "0", "sync.reconcile_interval_ms"),
        ("REGSYNC__DATABASE__MAX_CONNECTIONS", "0", "database.max_connections"),
        ("REGSYNC__SOURCE__TIMEOUT_MS", "0", "source.timeout_ms"),
    ] {
        let listen = format!("127.0.0.1:{}", free_port());
        let mut daemon = start_daemon(&db, &sim, &listen, &[(key, value)]);

        let exit = exited_within(&mut daemon.0, Duration::from_secs(30)).await;

        assert!(exit.is_some_and(|s| !s.success()), "{key}: {exit:?}");
        let mut stderr = String::new();
        std::io::Read::read_to_string(daemon.0.stderr.as_mut().expect("stderr"), &mut stderr).expect("read");
        assert!(stderr.contains(named), "{key}: {stderr}");
        assert!(!stderr.contains("panicked"), "{key}: {stderr}");
    }
}

/// The published ports of `docker-compose.yml`.
fn published_ports() -> Vec<String> {
    let compose = include_str!("../../docker-compose.yml");
    let mut in_ports = false;
    let mut ports = Vec::new();
    for line in compose.lines() {
        let trimmed = line.trim();
        if trimmed.ends_with(':') {
            in_ports = trimmed == "ports:";
        } else if in_ports && trimmed.starts_with("- ") {
            ports.push(trimmed.trim_start_matches("- ").trim_matches('"').to_owned());
        }
    }
    ports
}

#[test]
fn compose_publishes_every_port_on_loopback_only() {
    let ports = published_ports();

    assert!(ports.len() >= 3, "{ports:?}");
    for port in ports {
        assert!(port.starts_with("127.0.0.1:"), "{port} is reachable from other hosts");
    }
}

#[tokio::test]
async fn the_dashboard_role_can_read_the_views_and_write_nothing_even_out_of_read_only_mode() {
    let app = spawn_app().await;
    app.sim.upsert_meeting(meeting(1));
    app.tick().await;
    let url = app.settings.database.url.clone().expect("url");
    let options: sqlx::postgres::PgConnectOptions = secrecy::ExposeSecret::expose_secret(&url).parse().expect("url");
    let conninfo = format!(
        "host={} port={} dbname={} user={}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("postgres"),
        options.get_username()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/dashboard-role.sql");
    let psql = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "password='dashboard-test'", "-f", script, &conninfo])
        .output()
        .expect("psql runs");
    assert!(psql.status.success(), "{}", String::from_utf8_lossy(&psql.stderr));
    let dashboard = sqlx::PgPool::connect_with(options.username("regsync_dashboard").password("dashboard-test"))
        .await
        .expect("the dashboard logs in");

    let visible: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ops.meeting_status").fetch_one(&dashboard).await.expect("reads");
    let mut session = dashboard.acquire().await.expect("a session");
    sqlx::query("SET default_transaction_read_only = off").execute(&mut *session).await.expect("a user may");
    let mut writes = Vec::new();
    for write in [
        "CREATE TEMP TABLE scratch (x int)",
        "CREATE TABLE public.scratch (x int)",
        "UPDATE meetings SET state = 'pending'",
        "INSERT INTO sync_runs DEFAULT VALUES",
        "SELECT nextval('sync_runs_id_seq')",
    ] {
        if sqlx::query(write).execute(&mut *session).await.is_ok() {
            writes.push(write);
        }
    }
    drop(session);
    let limits: (i32, Option<Vec<String>>) = sqlx::query_as(
        "SELECT r.rolconnlimit, s.setconfig FROM pg_roles r
         LEFT JOIN pg_db_role_setting s ON s.setrole = r.oid AND s.setdatabase = 0
         WHERE r.rolname = 'regsync_dashboard'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("the role");

    assert_eq!(visible, 1);
    assert!(writes.is_empty(), "the dashboard could write: {writes:?}");
    assert!(limits.0 > 0, "a connection limit");
    let settings = limits.1.unwrap_or_default();
    assert!(settings.iter().any(|s| s.starts_with("statement_timeout=")), "{settings:?}");
}

#[tokio::test]
async fn a_shorter_poll_schedule_takes_effect_without_waiting_out_the_old_poll_lease() {
    use regsync::store::runs::claim_poll;
    let app = crate::helpers::spawn_app_with(|_| {}).await;
    let (old, new) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    // A replica on a ten-minute schedule holds the lease for five minutes.
    assert!(claim_poll(&app.pool, old, std::time::Duration::from_secs(300)).await.unwrap());

    // One on a one-minute schedule (lease: 30 s) polls at its next tick...
    assert!(claim_poll(&app.pool, new, std::time::Duration::from_secs(30)).await.unwrap());
    // ...and the ticks of the same schedule still poll once between them.
    assert!(!claim_poll(&app.pool, old, std::time::Duration::from_secs(30)).await.unwrap());
}
