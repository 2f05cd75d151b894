//! The `regsync` binary as operators run it: `migrate`, then `once`,
//! configured only through the environment.

use regsync_sim::{SimMeeting, CLIENT_SECRET};

use crate::helpers::{fresh_database, regsync_cli as regsync, scalar_at};

#[tokio::test]
async fn migrate_then_once_registers_every_valid_meeting_and_records_graphs_ids() {
    let db = fresh_database().await;
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(30);

    let migrate = tokio::task::spawn_blocking({
        let (db, sim) = (db.clone(), sim.clone());
        move || regsync(&["migrate"], &db, &sim, &[])
    })
    .await
    .expect("joined");
    let once = tokio::task::spawn_blocking({
        let (db, sim) = (db.clone(), sim.clone());
        move || regsync(&["once"], &db, &sim, &[])
    })
    .await
    .expect("joined");

    assert!(migrate.status.success(), "{}", String::from_utf8_lossy(&migrate.stderr));
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    assert!(String::from_utf8_lossy(&once.stdout).contains("27 created"));
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT external_id, registration_id FROM ops.meeting_status")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 30);
    for (id, registration_id) in rows {
        let n: usize = id.trim_start_matches("evt-").parse().expect("generated id");
        let m = SimMeeting::generated(n);
        let held = sim.registration(&m.organizer_id, &m.online_meeting_id).map(|r| r.id);
        assert_eq!(registration_id, held, "{id}");
    }
    assert_eq!(sim.stats().posts_while_registered, 0);
}

#[tokio::test]
async fn a_full_sync_at_trace_level_logs_neither_the_secret_nor_any_token() {
    let db = fresh_database().await;
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(5);
    sim.fail_next(None, regsync_sim::Fault::Status { status: 401, retry_after: None });
    // The platform's credentials too: Basic auth and an extra key header.
    sim.require_platform_headers(&[("x-second-key", "second-key-value-42")]);
    let platform_credentials = [
        ("RUST_LOG", "trace"),
        ("REGSYNC__SOURCE__AUTH", "basic"),
        ("REGSYNC__SOURCE__USERNAME", "regsync"),
        ("REGSYNC__SOURCE__PASSWORD", "platform-password-42"),
        ("REGSYNC__SOURCE__HEADERS__X-SECOND-KEY", "second-key-value-42"),
    ];

    let once = tokio::task::spawn_blocking({
        let (db, sim) = (db.clone(), sim.clone());
        move || regsync(&["once"], &db, &sim, &platform_credentials)
    })
    .await
    .expect("joined");

    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    let output = format!("{}{}", String::from_utf8_lossy(&once.stdout), String::from_utf8_lossy(&once.stderr));
    assert!(output.len() > 10_000, "trace logging produced output");
    assert_eq!(sim.stats().registrations, 5, "the platform took the credentials: {output:.2000}");
    assert!(!output.contains(CLIENT_SECRET), "the client secret leaked");
    let issued = sim.issued_secrets();
    assert!(!issued.is_empty());
    assert!(!issued.iter().any(|t| output.contains(t.as_str())), "a token leaked");
    assert!(!output.contains("platform-password-42"), "the platform password leaked");
    assert!(!output.contains("second-key-value-42"), "the platform key header leaked");
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    let dump: String = sqlx::query_scalar(
        "SELECT concat_ws(' ', (SELECT string_agg(t::text, ' ') FROM ops.graph_calls t),
                               (SELECT string_agg(t::text, ' ') FROM ops.sync_runs t),
                               (SELECT string_agg(t::text, ' ') FROM ops.meeting_status t),
                               (SELECT string_agg(t::text, ' ') FROM ops.rejected_items t))",
    )
    .fetch_one(&pool)
    .await
    .expect("audit");
    assert!(!issued.iter().any(|t| dump.contains(t.as_str())) && !dump.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn a_missing_setting_is_a_one_line_error_naming_the_key() {
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");

    let out = tokio::task::spawn_blocking(move || regsync(&["once"], "", &sim, &[("REGSYNC__GRAPH__CLIENT_ID", "")]))
        .await
        .expect("joined");

    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Two settings are missing: a line for each, after the one that says so.
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(lines[1].contains("database.url is required") && lines[2].contains("graph.client_id is required"), "{err}");
    assert!(err.contains("database.url") || err.contains("DATABASE_URL"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn the_first_once_after_the_credentials_are_fixed_syncs_everything_that_was_due() {
    let db = fresh_database().await;
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(20);
    sim.fail_next_token(regsync_sim::TokenFault {
        status: 401,
        error: "invalid_client".into(),
        description: "AADSTS7000215: Invalid client secret provided.".into(),
    });
    let once = || {
        let (db, sim) = (db.clone(), sim.clone());
        tokio::task::spawn_blocking(move || regsync(&["once"], &db, &sim, &[]))
    };

    let refused = once().await.expect("joined");
    let fixed = once().await.expect("joined");

    assert!(!refused.status.success(), "the refused cycle exits non-zero");
    assert!(fixed.status.success(), "{}", String::from_utf8_lossy(&fixed.stderr));
    let unsynced = scalar_at(&db, "SELECT count(*) FROM meetings WHERE state <> 'synced' OR attempts > 0").await;
    assert_eq!(unsynced, 0);
    assert_eq!(sim.stats().registrations, 18);
}

#[tokio::test]
async fn a_failed_command_says_each_cause_once_with_the_step_it_was_on() {
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let out = tokio::task::spawn_blocking(move || {
        let unreachable = "postgres://regsync@127.0.0.1:1/none";
        regsync(&["migrate"], unreachable, &sim, &[("REGSYNC__DATABASE__ACQUIRE_TIMEOUT_MS", "200")])
    })
    .await
    .expect("joined");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.starts_with("regsync: cannot prepare the database"), "{stderr}");
    assert_eq!(stderr.matches("migration failed").count(), 1, "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}
