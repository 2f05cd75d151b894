//! `regsync doctor` against a healthy simulator (every line passes, exit 0)
//! and against each failure it detects (that line fails with its fix, and
//! the exit code is non-zero).

use std::time::Duration;

use regsync_sim::{DeviceAnswer, Retirement, Sim, SimMeeting};

use crate::helpers::{fresh_database, regsync_cli_within};

/// A synced deployment: the database knows organizers and meetings.
async fn deployment() -> (String, Sim) {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(5);
    let (d, s) = (db.clone(), sim.clone());
    let once = tokio::task::spawn_blocking(move || regsync_cli_within(&["once"], &d, &s, &[], Duration::from_secs(60)))
        .await
        .expect("joined")
        .expect("once finished");
    assert!(once.status.success(), "{}", String::from_utf8_lossy(&once.stderr));
    (db, sim)
}

/// Runs `regsync doctor` with `args` and `env`; its stdout lines and
/// whether it exited 0.
async fn doctor(db: &str, sim: &Sim, args: &[&str], env: &[(&str, &str)]) -> (Vec<String>, bool, String) {
    let (db, sim) = (db.to_owned(), sim.clone());
    let args: Vec<String> = ["doctor"].iter().chain(args).map(|s| (*s).to_owned()).collect();
    let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        regsync_cli_within(&args, &db, &sim, &env, Duration::from_secs(60))
    })
    .await
    .expect("joined")
    .expect("doctor finished");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (stdout.lines().map(str::to_owned).collect(), out.status.success(), String::from_utf8_lossy(&out.stderr).into())
}

/// The line of check `name`.
fn line<'a>(lines: &'a [String], name: &str) -> &'a str {
    lines.iter().find(|l| l[6..].starts_with(&format!("{name}:"))).map_or("", String::as_str)
}

const CHECKS: [&str; 8] =
    ["configuration", "database", "token", "permissions", "audience", "meetings", "registration", "clock"];

#[tokio::test]
async fn a_healthy_deployment_passes_every_check() {
    let (db, sim) = deployment().await;
    let graph_calls = sim.log().len();

    let (lines, success, stderr) = doctor(&db, &sim, &[], &[]).await;

    assert!(success, "{lines:#?} {stderr}");
    assert_eq!(lines.len(), CHECKS.len(), "{lines:#?}");
    for name in CHECKS {
        assert!(line(&lines, name).starts_with("ok    "), "{name}: {lines:#?}");
    }
    let after: Vec<_> = sim.log().into_iter().skip(graph_calls).collect();
    assert!(after.iter().all(|r| r.method == "GET" && !r.acted), "doctor changes nothing at Graph: {after:?}");
}

/// A check, how the simulator breaks it, the environment that breaks it,
/// and the words of its fix.
type Case = (&'static str, Box<dyn Fn(&Sim)>, Vec<(&'static str, &'static str)>, &'static str);

#[tokio::test]
async fn each_failure_fails_its_own_line_with_the_fix() {
    let (db, _synced_by) = deployment().await;
    let organizer = SimMeeting::generated(1).organizer_id;
    let cases: Vec<Case> = vec![
        (
            "configuration",
            Box::new(|_| {}),
            vec![("REGSYNC__GRAPH__BASE_URL", "http://graph.microsoft.com/beta")],
            "must be https",
        ),
        (
            "database",
            Box::new(|_| {}),
            vec![
                ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
                ("REGSYNC__DATABASE__ACQUIRE_TIMEOUT_MS", "500"),
            ],
            "check database.url",
        ),
        ("token", Box::new(|_| {}), vec![("REGSYNC__GRAPH__CLIENT_SECRET", "wrong")], "update graph.client_secret"),
        ("permissions", Box::new(|s| s.grant_roles(&["User.Read.All"])), vec![], "OnlineMeetings.ReadWrite.All"),
        ("audience", Box::new(|s| s.token_audience("https://graph.microsoft.us")), vec![], "set graph.cloud"),
        (
            "meetings",
            Box::new(|s| s.forbid_organizer(&SimMeeting::generated(1).organizer_id)),
            vec![],
            "Grant-CsApplicationAccessPolicy",
        ),
        ("registration", Box::new(|s| s.retire_api(Some(Retirement::Gone))), vec![], "retired"),
        ("clock", Box::new(|s| s.skew_graph_clock(Duration::from_secs(900))), vec![], "sync it (NTP)"),
    ];
    for (name, setup, env, fix) in cases {
        let sim = {
            // A fresh simulator per case, over the same database.
            let fresh = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
            fresh.seed(5);
            setup(&fresh);
            fresh
        };
        let (lines, success, stderr) = doctor(&db, &sim, &["--organizer", &organizer], &env).await;

        let failed = line(&lines, name);
        assert!(!success, "{name}: the exit code says it failed: {lines:#?}");
        assert!(failed.starts_with("FAIL  ") && failed.contains(fix), "{name}: {lines:#?}");
        assert!(stderr.contains("check(s) failed"), "{name}: {stderr}");
    }
}

#[tokio::test]
async fn an_unmigrated_database_is_named_with_the_command_that_fixes_it() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");

    let (lines, success, _) = doctor(&db, &sim, &[], &[]).await;

    assert!(!success);
    assert!(line(&lines, "database").contains("regsync migrate"), "{lines:#?}");
}

#[tokio::test]
async fn delegated_sign_in_is_checked_for_the_signed_in_organizer() {
    let (db, sim) = deployment().await;
    let key = crate::delegated::encryption_key();
    let env = [("REGSYNC__GRAPH__AUTH", "delegated"), ("REGSYNC__SECURITY__ENCRYPTION_KEY", key.as_str())];

    let (before, success, _) = doctor(&db, &sim, &[], &env).await;
    assert!(!success);
    assert!(line(&before, "token").contains("run `regsync login`"), "{before:#?}");

    let organizer = SimMeeting::generated(1).organizer_id;
    sim.script_device_code(vec![DeviceAnswer::SignedIn { oid: organizer.clone(), upn: "o@contoso.example".into() }]);
    let (d, s, e) = (db.clone(), sim.clone(), env.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let login = tokio::task::spawn_blocking(move || {
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        regsync_cli_within(&["login"], &d, &s, &e, Duration::from_secs(60))
    })
    .await
    .expect("joined")
    .expect("login finished");
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));

    let (after, success, stderr) = doctor(&db, &sim, &[], &env).await;
    assert!(success, "{after:#?} {stderr}");
    assert!(line(&after, "token").contains(&format!("for organizer {organizer}")), "{after:#?}");
    assert!(line(&after, "permissions").contains("delegated OnlineMeetings.ReadWrite"), "{after:#?}");
}

#[tokio::test]
async fn the_webinar_target_says_which_lookup_of_a_lost_registration_this_app_may_make() {
    let (db, sim) = deployment().await;
    let v1 = sim.endpoints().graph.replace("/beta", "/v1.0");
    let webinar = SimMeeting::generated(1).online_meeting_id;
    sim.put_webinar(&webinar, "published");
    let env = [
        ("REGSYNC__GRAPH__TARGET", "virtual_event_webinar"),
        ("REGSYNC__GRAPH__BASE_URL", v1.as_str()),
        ("REGSYNC__SOURCE__FIELDS__WEBINAR_ID", "/online_meeting_id"),
    ];
    let args = ["--meeting", webinar.as_str()];

    let (lines, success, stderr) = doctor(&db, &sim, &args, &env).await;
    assert!(success, "{lines:#?} {stderr}");
    assert!(line(&lines, "registration lookup").contains("found by e-mail"), "{lines:#?}");

    sim.refuse_registration_get();
    let (lines, success, _) = doctor(&db, &sim, &args, &env).await;
    assert!(success, "{lines:#?}");
    assert!(line(&lines, "registration lookup").contains("found by listing"), "{lines:#?}");
}

#[tokio::test]
async fn the_town_hall_target_checks_each_features_permission_the_event_its_configuration_and_cancel() {
    let (db, sim) = deployment().await;
    let v1 = sim.endpoints().graph.replace("/beta", "/v1.0");
    let townhall = SimMeeting::generated(1).online_meeting_id;
    sim.put_townhall(&townhall, "published");
    sim.configure_registration(
        &townhall,
        regsync_sim::RegistrationConfig { capacity: 500, waitlist: true, manual_approval: false },
    );
    let env = [
        ("REGSYNC__GRAPH__TARGET", "virtual_event_townhall"),
        ("REGSYNC__GRAPH__BASE_URL", v1.as_str()),
        ("REGSYNC__SOURCE__FIELDS__TOWNHALL_ID", "/online_meeting_id"),
        ("REGSYNC__SOURCE__FIELDS__ENDS_AT", "/ends_at"),
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__ATTENDANCE__ENABLED", "true"),
    ];
    let args = ["--meeting", townhall.as_str()];

    let (lines, success, stderr) = doctor(&db, &sim, &args, &env).await;
    assert!(success, "{lines:#?} {stderr}");
    assert!(line(&lines, "event").contains(&format!("town hall {townhall} is published")), "{lines:#?}");
    let configuration = line(&lines, "registration configuration");
    assert!(configuration.contains("capacity 500, waitlist on"), "{lines:#?}");
    assert!(line(&lines, "cancel").contains("may cancel"), "{lines:#?}");
    assert!(line(&lines, "attendance").starts_with("ok"), "{lines:#?}");
    assert!(line(&lines, "registration lookup").starts_with("ok"), "{lines:#?}");

    // An app consented for registrations only, with a draft town hall.
    sim.grant_roles(&["VirtualEventRegistration-Anon.ReadWrite.All"]);
    sim.put_townhall(&townhall, "draft");
    let (lines, success, _) = doctor(&db, &sim, &args, &env).await;
    assert!(!success, "{lines:#?}");
    let permissions = line(&lines, "permissions");
    assert!(
        permissions.starts_with("FAIL") && permissions.contains("OnlineMeetingArtifact.Read.All (attendance)"),
        "{lines:#?}"
    );
    assert!(line(&lines, "event").starts_with("FAIL") && line(&lines, "event").contains("publish it"), "{lines:#?}");
}
