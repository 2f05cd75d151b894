//! The ops dashboard as shipped in config/: every SQL panel runs against a
//! database holding meetings in every state, every PromQL expression (in
//! the dashboard and the alert rules) names only metrics regsync exports,
//! the backlog's age survives retries, failures carry a category, and the
//! real Prometheus scrapes a running `regsync run`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use regsync::server::{self, Readiness};
use regsync_sim::{Fault, Sim};
use sqlx::Row;

use crate::helpers::{
    eventually, free_port, fresh_database, meeting, spawn_app, spawn_app_with, start_daemon, Process, TestApp,
};

const ALERTS: &str = include_str!("../../config/prometheus/alerts.yml");

/// Every panel's query in every dashboard Grafana is given: (title, SQL or
/// PromQL, is it SQL).
fn panel_queries() -> Vec<(String, String, bool)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/grafana/dashboards");
    let mut panels = Vec::new();
    for file in std::fs::read_dir(&dir).expect("the dashboards folder") {
        let path = file.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        let dashboard: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        panels.extend(dashboard["panels"].as_array().cloned().unwrap_or_default());
    }
    assert!(!panels.is_empty());
    let mut queries = Vec::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("a title").to_owned();
        for target in panel["targets"].as_array().expect("targets") {
            match (target["rawSql"].as_str(), target["expr"].as_str()) {
                (Some(sql), None) => queries.push((title.clone(), sql.to_owned(), true)),
                (None, Some(expr)) => queries.push((title.clone(), expr.to_owned(), false)),
                _ => panic!("panel {title:?} has a target that is neither SQL nor PromQL"),
            }
        }
    }
    queries
}

/// Meetings in every state, a throttled call, a rejected item, a replica.
async fn a_database_in_every_state(app: &TestApp) {
    app.sim.seed(6);
    // Teams' own registration on it: fails, whatever the order of the calls.
    let foreign = app.listed(meeting(100));
    app.sim.put_registration(&foreign.organizer_id, &foreign.online_meeting_id, "everyone", true);
    app.listed(regsync_sim::SimMeeting::new("bad-1", "", "MSpBad"));
    app.tick().await;
    sqlx::raw_sql(
        "UPDATE meetings SET state = 'retrying', next_attempt_at = now() + interval '1 hour' WHERE external_id = 'evt-00001';
         UPDATE meetings SET state = 'pending', next_attempt_at = now() WHERE external_id = 'evt-00002';
         UPDATE meetings SET state = 'in_flight', lease_token = gen_random_uuid(), lease_expires_at = now() + interval '1 hour'
             WHERE external_id = 'evt-00004';
         INSERT INTO graph_calls (external_id, method, path, http_status, duration_ms, client_request_id, outcome)
             VALUES ('evt-00005', 'POST', '/users/x/onlineMeetings/y/registration', 429, 3, gen_random_uuid(), 'throttled');
         INSERT INTO replicas (id, host, version) VALUES (gen_random_uuid(), 'host-a', '0.1.0');
         INSERT INTO sign_ins (organizer_id, upn, sealed_refresh_token, revoked_at, revoked_reason)
             VALUES ('org-x', 'x@contoso.example', '\\x00', now(), 'invalid_grant: AADSTS50173');
         INSERT INTO organizer_conditions (organizer_id, condition, reason)
             VALUES ('org-x', 'sign_in_refused', 'invalid_grant: AADSTS50173; have organizer org-x run `regsync login`');
         INSERT INTO registrants (external_id, meeting_external_id, desired, state, last_error, last_error_category)
             VALUES ('p-1', 'evt-00003', 'registered', 'synced', NULL, NULL),
                    ('p-2', 'evt-00003', 'registered', 'failed', 'the platform refused the write-back', 'writeback');
         UPDATE registrants SET registrant_id = 'reg-1', teams_status = 'cancelled', teams_status_at = now(),
             status_written_back = 'cancelled', status_written_back_at = now() WHERE external_id = 'p-1';
         INSERT INTO attendance (meeting_external_id, registrant_external_id, attended, total_seconds, figures,
                                 written_back, written_back_at)
             VALUES ('evt-00003', 'p-1', TRUE, 1800, 'f', 'f', now()),
                    ('evt-00003', 'p-2', FALSE, 0, 'g', NULL, NULL);
         INSERT INTO unmatched_attendees (meeting_external_id, email, display_name, total_seconds)
             VALUES ('evt-00003', 'walk-in@guest.example', 'A Guest', 600);",
    )
    .execute(&app.pool)
    .await
    .expect("arranged");
    let states = app.scalar("SELECT count(DISTINCT state) FROM meetings").await;
    assert_eq!(states, 5, "meetings in every state");
}

#[tokio::test]
async fn every_sql_panel_runs_against_a_database_holding_meetings_in_every_state() {
    let app = spawn_app().await;
    a_database_in_every_state(&app).await;

    let mut ran = 0;
    for (title, sql, is_sql) in panel_queries() {
        if !is_sql {
            continue;
        }
        for relation in sql.split_whitespace().skip_while(|w| !w.eq_ignore_ascii_case("FROM")).skip(1).take(1) {
            assert!(relation.starts_with("ops."), "panel {title:?} reads {relation}, not an ops view");
        }
        let rows = sqlx::query(&sql).fetch_all(&app.pool).await.unwrap_or_else(|e| panic!("panel {title:?}: {e}"));
        let row = rows.first().unwrap_or_else(|| panic!("panel {title:?} shows nothing for a busy database"));
        assert!(!row.columns().is_empty(), "panel {title:?}");
        ran += 1;
    }
    assert!(ran >= 8, "{ran} SQL panels");
}

/// The `regsync_*` names a PromQL text uses.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = promql;
    while let Some(at) = rest.find("regsync_") {
        let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[tokio::test]
async fn every_promql_expression_names_only_metrics_regsync_exports() {
    // A real scrape of the metrics server after a cycle.
    let app = spawn_app().await;
    app.sim.seed(3);
    app.tick().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let readiness = Arc::new(Readiness::new(Duration::from_secs(60)));
    let router = server::router(app.pool.clone(), readiness, app.ctx.metrics.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let scrape = reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape").text().await.expect("text");
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect();

    let mut used = BTreeSet::new();
    for (_, query, is_sql) in panel_queries() {
        if !is_sql {
            used.extend(metric_names(&query));
        }
    }
    for line in ALERTS.lines().filter(|l| l.trim_start().starts_with("expr:")) {
        used.extend(metric_names(line));
    }

    assert!(used.len() >= 8, "{used:?}");
    let unknown: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(unknown.is_empty(), "not exported: {unknown:?}; exported: {exported:?}");
}

#[tokio::test]
async fn a_retrying_meeting_keeps_its_due_since_and_a_failure_carries_its_category() {
    // Retries wait a minute unless the test makes them due.
    let app = spawn_app_with(|s| {
        s.sync.backoff_base_ms = 60_000;
        s.sync.backoff_max_ms = 60_000;
    })
    .await;
    let slow = app.listed(meeting(1));
    let forbidden = app.listed(meeting(2));
    app.sim.fail_next(Some("POST"), Fault::Status { status: 403, retry_after: None });
    app.sim.fail_next(Some("POST"), Fault::Status { status: 500, retry_after: None });
    app.tick().await;
    let due_since = |id: &str| {
        let (pool, id) = (app.pool.clone(), id.to_owned());
        async move {
            sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(
                "SELECT due_since FROM ops.meeting_status WHERE external_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("row")
        }
    };
    let category = |id: &str| {
        let (pool, id) = (app.pool.clone(), id.to_owned());
        async move {
            sqlx::query_scalar::<_, Option<String>>(
                "SELECT error_category FROM ops.meeting_status WHERE external_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("row")
        }
    };
    let retrying: Vec<String> = sqlx::query_scalar("SELECT external_id FROM meetings WHERE state = 'retrying'")
        .fetch_all(&app.pool)
        .await
        .expect("retrying");
    assert_eq!(retrying.len(), 1, "one meeting met the 500");
    let first_due = due_since(&retrying[0]).await.expect("due since the poll");

    // Another failure later: the meeting is still due since the first time.
    let time_passes = async || {
        sqlx::query("UPDATE meetings SET next_attempt_at = now(), lookup_not_before = NULL WHERE state = 'retrying'")
            .execute(&app.pool)
            .await
            .expect("due");
    };
    app.sim.fail_next(Some("GET"), Fault::Status { status: 500, retry_after: None });
    time_passes().await;
    app.reconcile().await;
    assert_eq!(app.status(&retrying[0]).await.state, "retrying");
    let still_due = due_since(&retrying[0]).await;
    time_passes().await;
    app.settle().await;

    assert_eq!(still_due, Some(first_due), "due_since does not move while the meeting retries");
    assert_eq!(due_since(&retrying[0]).await, None, "a settled meeting is due no more");
    let failed: String = sqlx::query_scalar("SELECT external_id FROM meetings WHERE state = 'failed'")
        .fetch_one(&app.pool)
        .await
        .expect("the 403 failed");
    assert_eq!(category(&failed).await.as_deref(), Some("permission"));
    let backlog = app.scalar("SELECT open FROM ops.backlog").await;
    assert_eq!(backlog, 0);
    let _ = (slow, forbidden);
}

#[tokio::test]
async fn the_real_prometheus_scrapes_a_running_daemon() {
    let Some(prometheus) = which("prometheus") else {
        assert!(std::env::var_os("CI").is_none(), "CI must have prometheus (apt-get install prometheus)");
        eprintln!("skipped: no prometheus binary (apt-get install prometheus)");
        return;
    };
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(5);
    let listen = format!("127.0.0.1:{}", free_port());
    let _daemon = start_daemon(&db, &sim, &listen, &[]);
    let dir = std::env::temp_dir().join(format!("regsync-prometheus-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: regsync\n    static_configs:\n      - targets: [\"{listen}\"]\n"
        ),
    )
    .expect("config");
    let web = format!("127.0.0.1:{}", free_port());
    let _prometheus = Process(
        std::process::Command::new(prometheus)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={web}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    let query = format!("http://{web}/api/v1/query?query=regsync_meetings%7Bstate%3D%22synced%22%7D");
    let mut last = String::new();
    let scraped = eventually(Duration::from_secs(90), async || {
        let Ok(response) = reqwest::get(&query).await else { return false };
        last = response.text().await.unwrap_or_default();
        let answer: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
        answer["data"]["result"][0]["value"][1].as_str().is_some_and(|v| v.parse::<f64>().is_ok_and(|n| n > 0.0))
    })
    .await;

    assert!(scraped, "Prometheus never held regsync_meetings{{state=\"synced\"}}: {last}");
    let _ = std::fs::remove_dir_all(dir);
}

fn which(binary: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|p| p.is_file())
}
