//! Commands that behave: `plan` predicts the next cycle and writes nothing,
//! each command asks only for the settings it uses, `status` only reads,
//! and `--no-migrate` deployments refuse an unmigrated database.

use std::collections::BTreeMap;

use regsync_sim::{Sim, SimMeeting};

use crate::helpers::{fresh_database, regsync_cli, scalar_at};

/// What a database holds, to prove a command wrote nothing.
async fn fingerprint(db: &str) -> String {
    let pool = sqlx::PgPool::connect(db).await.expect("db");
    sqlx::query_scalar(
        "SELECT concat_ws('|',
             (SELECT md5(coalesce(string_agg(m::text, ',' ORDER BY id), '')) FROM meetings m),
             (SELECT count(*) FROM sync_runs), (SELECT count(*) FROM graph_calls),
             (SELECT count(*) FROM rejected_items), (SELECT throttled_until::text FROM graph_throttle))",
    )
    .fetch_one(&pool)
    .await
    .expect("fingerprint")
}

async fn cli(
    args: &'static [&'static str],
    db: &str,
    sim: &Sim,
    extra: &'static [(&str, &str)],
) -> std::process::Output {
    let (db, sim) = (db.to_owned(), sim.clone());
    tokio::task::spawn_blocking(move || regsync_cli(args, &db, &sim, extra)).await.expect("joined")
}

/// `regsync plan`'s lines as meeting id → Graph methods it predicts.
fn predicted(stdout: &str) -> BTreeMap<String, Vec<&'static str>> {
    stdout
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(id, what)| {
            let mut methods = Vec::new();
            for step in what.split(", then ") {
                if step.starts_with("look up") {
                    methods.push("GET");
                } else if step == "create" {
                    methods.push("POST");
                } else if step == "delete" {
                    methods.push("DELETE");
                }
            }
            (id.to_owned(), methods)
        })
        .collect()
}

#[tokio::test]
async fn plan_predicts_the_next_cycle_and_writes_nothing_at_graph_or_in_the_database() {
    // Arrange: a synced deployment, then the platform changes.
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let ids: Vec<SimMeeting> =
        (1..=5).map(|i| SimMeeting::new(&format!("evt-{i}"), "org-1", &format!("MSp{i}"))).collect();
    for m in &ids {
        sim.upsert_meeting(m.clone());
    }
    assert!(cli(&["once"], &db, &sim, &[]).await.status.success());
    sim.update_meeting("evt-1", |m| m.status = "cancelled".into());
    sim.update_meeting("evt-2", |m| m.allowed_registrant = "organization".into());
    sim.upsert_meeting(SimMeeting::new("evt-6", "org-1", "MSp6"));
    let mut first_met_cancelled = SimMeeting::new("evt-7", "org-1", "MSp7");
    first_met_cancelled.status = "cancelled".into();
    sim.upsert_meeting(first_met_cancelled);
    sim.upsert_meeting(SimMeeting::new("evt-8", "", "MSp8"));
    let before = fingerprint(&db).await;
    let requests_before = sim.log().len();

    // Act
    let plan = cli(&["plan"], &db, &sim, &[]).await;
    let after_plan = fingerprint(&db).await;
    let requests_after_plan = sim.log().len();
    let once = cli(&["once"], &db, &sim, &[]).await;

    // Assert: nothing written, and the next cycle did what plan said.
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.status.success(), "{}", String::from_utf8_lossy(&plan.stderr));
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    assert_eq!(after_plan, before, "plan wrote to the database");
    assert_eq!(requests_after_plan, requests_before, "plan called Graph");
    let log = sim.log();
    let mut done: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for (i, id) in (1..=8).map(|i| (i, format!("evt-{i}"))) {
        let calls: Vec<&'static str> = log[requests_before..]
            .iter()
            .filter(|r| r.meeting == format!("MSp{i}"))
            .map(|r| match r.method.as_str() {
                "GET" => "GET",
                "POST" => "POST",
                _ => "DELETE",
            })
            .collect();
        done.insert(id, calls);
    }
    let expected: BTreeMap<String, Vec<&'static str>> = [
        ("evt-1", vec!["DELETE"]),
        ("evt-2", vec!["DELETE", "POST"]),
        ("evt-3", vec![]),
        ("evt-4", vec![]),
        ("evt-5", vec![]),
        ("evt-6", vec!["POST"]),
        ("evt-7", vec!["GET"]),
        ("evt-8", vec![]),
    ]
    .into_iter()
    .map(|(id, calls)| (id.to_owned(), calls))
    .collect();
    assert_eq!(predicted(&stdout), expected, "plan said:\n{stdout}");
    assert_eq!(done, expected, "once did otherwise; plan said:\n{stdout}");
    assert!(stdout.contains("evt-8: reject: "), "{stdout}");
    assert!(stdout.contains("evt-3: nothing (in step)"), "{stdout}");
}

#[tokio::test]
async fn migrate_status_and_retry_need_no_graph_credentials_and_status_only_reads() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let without_graph: &[(&str, &str)] = &[
        ("REGSYNC__GRAPH__TENANT_ID", ""),
        ("REGSYNC__GRAPH__CLIENT_ID", ""),
        ("REGSYNC__GRAPH__CLIENT_SECRET", ""),
        ("REGSYNC__SOURCE__BASE_URL", ""),
    ];
    let run = |args: &'static [&'static str]| {
        let (db, sim) = (db.clone(), sim.clone());
        tokio::task::spawn_blocking(move || regsync_cli(args, &db, &sim, without_graph))
    };

    let status_first = run(&["status"]).await.expect("joined");
    let tables_after_status =
        scalar_at(&db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").await;
    let migrate = run(&["migrate"]).await.expect("joined");
    let status = run(&["status"]).await.expect("joined");
    let retry = run(&["retry", "--failed"]).await.expect("joined");
    let once = run(&["once"]).await.expect("joined");

    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!status_first.status.success());
    assert!(stderr(&status_first).contains("run `regsync migrate`"), "{}", stderr(&status_first));
    assert_eq!(tables_after_status, 0, "status created nothing");
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(retry.status.success(), "{}", stderr(&retry));
    assert!(!once.status.success(), "once needs Graph and the platform");
    assert!(stderr(&once).contains("graph.tenant_id is required"), "{}", stderr(&once));
}

#[tokio::test]
async fn a_deployment_that_migrates_separately_refuses_an_unmigrated_database() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(3);

    let refused = cli(&["once", "--no-migrate"], &db, &sim, &[]).await;
    let by_setting = cli(&["once"], &db, &sim, &[("REGSYNC__DATABASE__MIGRATE", "false")]).await;
    let tables = scalar_at(&db, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").await;
    let migrate = cli(&["migrate"], &db, &sim, &[]).await;
    let once = cli(&["once", "--no-migrate"], &db, &sim, &[]).await;

    for o in [&refused, &by_setting] {
        assert!(!o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("run `regsync migrate`"));
    }
    assert_eq!(tables, 0);
    assert!(migrate.status.success());
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
}

#[tokio::test]
async fn logs_follow_regsync_log_format_and_carry_no_colour_into_a_pipe() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(2);

    let json = cli(&["once"], &db, &sim, &[("REGSYNC__LOG__FORMAT", "json")]).await;
    let pretty = cli(&["once"], &db, &sim, &[]).await;

    let json_log = String::from_utf8_lossy(&json.stderr);
    let first = json_log.lines().next().expect("a log line");
    assert!(serde_json::from_str::<serde_json::Value>(first).is_ok(), "not JSON: {first}");
    let pretty_log = String::from_utf8_lossy(&pretty.stderr);
    assert!(!pretty_log.is_empty());
    assert!(!pretty_log.contains('\u{1b}'), "colour codes in a pipe: {pretty_log:?}");
}
