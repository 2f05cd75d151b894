//! `regsync run` as a real process: a full sync, health, readiness, metrics,
//! and a graceful stop on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use regsync_sim::{FaultRates, Sim};

use crate::helpers::{
    eventually, exited_within, free_port, fresh_database, scalar_at, send_signal, simulator_env, Process, Signal,
};

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

async fn wait_for(what: &str, limit: Duration, log: &dyn Fn() -> String, check: impl AsyncFnMut() -> bool) {
    assert!(eventually(limit, check).await, "timed out waiting for {what}; the daemon logged:\n{}", log());
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    let lines: Vec<std::io::Result<String>> = text.lines().map(|l| Ok(l.to_owned())).collect();
    prometheus_parse::Scrape::parse(lines.into_iter()).expect("Prometheus text")
}

fn metric_names(text: &str) -> Vec<String> {
    scrape(text).samples.into_iter().map(|s| s.metric).collect()
}

/// `regsync_meetings{state="synced"}`, if the scrape has it.
fn synced_gauge(text: &str) -> Option<f64> {
    scrape(text).samples.into_iter().find_map(|s| match s.value {
        prometheus_parse::Value::Gauge(v)
            if s.metric == "regsync_meetings" && s.labels.get("state") == Some("synced") =>
        {
            Some(v)
        }
        _ => None,
    })
}

#[tokio::test]
async fn the_daemon_syncs_serves_health_and_metrics_and_stops_cleanly_on_sigterm() {
    // Arrange: the simulator and the daemon as real processes.
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(50);
    sim.set_rates(FaultRates { latency: Duration::from_millis(5), ..Default::default() });
    let listen = format!("127.0.0.1:{}", free_port());
    let log_path = std::env::temp_dir().join(format!("regsync-daemon-{}.log", uuid::Uuid::new_v4().simple()));
    let log = std::fs::File::create(&log_path).expect("log file");
    let daemon = Command::new(env!("CARGO_BIN_EXE_regsync"))
        .args(["run", "--log-format", "json"])
        .envs(simulator_env(&db, &sim))
        .env("REGSYNC__SYNC__POLL_SCHEDULE", "*/2 * * * * *")
        .env("REGSYNC__SERVER__LISTEN", &listen)
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("regsync run starts");
    let mut daemon = Process(daemon);

    // Act: wait until the simulator holds every active meeting's registration.
    let daemon_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    wait_for("45 registrations", Duration::from_secs(60), &daemon_log, async || sim.stats().registrations == 45).await;
    wait_for("readiness", Duration::from_secs(20), &daemon_log, async || {
        get(&format!("http://{listen}/readyz")).await.is_some_and(|(status, _)| status == 200)
    })
    .await;
    // The gauge is read from the database at most every two seconds: wait
    // for the scrape that shows every meeting synced.
    let mut metrics = String::new();
    wait_for("all 50 meetings synced in /metrics", Duration::from_secs(30), &daemon_log, async || {
        let Some((200, body)) = get(&format!("http://{listen}/metrics")).await else { return false };
        let synced = synced_gauge(&body) == Some(50.0);
        metrics = body;
        synced
    })
    .await;
    let health = get(&format!("http://{listen}/healthz")).await.expect("healthz");
    let alive = scalar_at(&db, "SELECT count(*) FROM ops.replicas WHERE alive AND version <> ''").await;
    send_signal(&daemon.0, Signal::SIGTERM);
    let exit = exited_within(&mut daemon.0, Duration::from_secs(30)).await.expect("the daemon stopped within 30 s");

    // Assert
    assert_eq!(health.0, 200);
    let names = metric_names(&metrics);
    for expected in [
        "regsync_meetings",
        "regsync_graph_requests_total",
        "regsync_graph_request_duration_seconds_count",
        "regsync_polls_total",
        "regsync_last_successful_poll_timestamp_seconds",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    assert!(exit.success(), "exit status {exit}");
    let leased = scalar_at(&db, "SELECT count(*) FROM meetings WHERE lease_token IS NOT NULL").await;
    assert_eq!(leased, 0);
    assert_eq!(alive, 1, "the daemon's heartbeat in ops.replicas");
    let _ = std::fs::remove_file(&log_path);
}
