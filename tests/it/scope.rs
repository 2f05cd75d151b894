//! Whose trouble a refusal is: one departed organizer (Graph answers 404
//! `UnknownError` for a user it cannot find) fails that organizer's rows,
//! with a reason naming them, and never stops anyone else; an organizer's
//! condition shows in `ops.organizers` and ends with `regsync retry
//! --organizer`.

use regsync_sim::SimMeeting;

use regsync::app::RetryWhat;

use crate::helpers::{eventually, meeting, spawn_app_with, TestApp};

async fn suspended(app: &TestApp) -> Option<String> {
    sqlx::query_scalar("SELECT reason FROM ops.graph_suspension").fetch_one(&app.pool).await.expect("the view")
}

/// `ops.organizers` for one organizer: condition, reason, rows waiting.
async fn organizer(app: &TestApp, id: &str) -> (String, Option<String>, i64) {
    sqlx::query_as("SELECT condition, reason, rows_waiting FROM ops.organizers WHERE organizer_id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("the organizer's row")
}

/// Graph calls that carried `organizer`'s identity.
async fn calls_acting_for(app: &TestApp, organizer: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ops.graph_calls WHERE organizer_id = $1")
        .bind(organizer)
        .fetch_one(&app.pool)
        .await
        .expect("calls")
}

#[tokio::test]
async fn one_departed_organizer_among_1000_meetings_fails_only_their_meetings_and_never_suspends_the_deployment() {
    let app = spawn_app_with(|s| s.sync.max_attempts = 3).await;
    let meetings: Vec<SimMeeting> = (1..=1000).map(|n| app.listed(meeting(n))).collect();
    let departed = "org-1";
    app.sim.depart_organizer(departed);

    let mut ever_suspended = None;
    let settled = eventually(std::time::Duration::from_secs(120), async || {
        app.tick().await;
        ever_suspended = ever_suspended.take().or(suspended(&app).await);
        app.scalar("SELECT count(*) FROM meetings WHERE state NOT IN ('synced', 'failed')").await == 0
    })
    .await;

    assert!(settled, "every meeting settled");
    assert_eq!(ever_suspended, None, "one organizer's refusal never suspends the deployment");
    for m in &meetings {
        let status = app.status(&m.id).await;
        if m.organizer_id == departed {
            assert_eq!(status.state, "failed", "{}", m.id);
            let reason = status.last_error.unwrap_or_default();
            assert!(reason.contains("organizer org-1") && reason.contains("regsync retry"), "{reason}");
        } else {
            assert_eq!(status.state, "synced", "{}: nobody else waits for org-1", m.id);
        }
    }
    let theirs = meetings.iter().filter(|m| m.organizer_id == departed).count();
    let (condition, reason, waiting) = organizer(&app, departed).await;
    assert_eq!((condition.as_str(), waiting), ("unknown_to_graph", i64::try_from(theirs).unwrap()));
    assert!(reason.unwrap_or_default().contains("regsync retry --organizer org-1"));
    assert_eq!(organizer(&app, "org-2").await.0, "ok");
    let spent = calls_acting_for(&app, departed).await;
    assert!(spent < 20, "the organizer's condition parks their other {theirs} meetings without a call: {spent} calls");

    // Graph knows them again; the operator says so.
    app.sim.restore_organizer(departed);
    let due = regsync::app::retry(&app.settings, &RetryWhat::Organizer(departed.into())).await.expect("retry");
    assert_eq!(due, u64::try_from(theirs).unwrap());
    app.tick().await;
    app.settle().await;
    assert_eq!(organizer(&app, departed).await.0, "ok");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state <> 'synced'").await, 0);
}

#[tokio::test]
async fn an_organizer_without_an_access_policy_is_parked_after_two_refusals_and_holds_nobody_else() {
    // One Graph slot: at most two workers hold a permit at any moment.
    let app = spawn_app_with(|s| s.graph.max_concurrency = 1).await;
    let meetings: Vec<SimMeeting> = (1..=30).map(|n| app.listed(meeting(n))).collect();
    app.sim.forbid_organizer("org-2");

    app.tick().await;
    app.settle().await;

    let theirs: Vec<_> = meetings.iter().filter(|m| m.organizer_id == "org-2").collect();
    for m in &meetings {
        let status = app.status(&m.id).await;
        if m.organizer_id == "org-2" {
            assert_eq!(status.state, "failed", "{}", m.id);
            assert!(status.last_error.unwrap_or_default().contains("Grant-CsApplicationAccessPolicy"));
        } else {
            assert_eq!(status.state, "synced", "{}", m.id);
        }
    }
    let (condition, reason, waiting) = organizer(&app, "org-2").await;
    assert_eq!((condition.as_str(), waiting), ("no_access_policy", i64::try_from(theirs.len()).unwrap()));
    assert!(reason.unwrap_or_default().contains("regsync retry --organizer org-2"));
    // Two refusals are the evidence; the rest wait without a call, but for
    // the (at most two) workers that took their permit before the condition
    // was recorded.
    let spent = calls_acting_for(&app, "org-2").await;
    assert!(spent <= 4, "{spent} calls for {} meetings", theirs.len());
}

#[tokio::test]
async fn a_retired_api_in_a_one_organizer_deployment_is_corroborated_by_a_known_registration() {
    let app = spawn_app_with(|_| {}).await;
    let one = |n: usize| SimMeeting::new(&format!("evt-{n}"), "org-only", &format!("MSp{n:04}"));
    for n in 1..=3 {
        app.listed(one(n));
    }
    app.tick().await;
    app.settle().await;
    app.sim.retire_api(Some(regsync_sim::Retirement::Gone));
    let new: Vec<SimMeeting> = (4..=6).map(|n| app.listed(one(n))).collect();

    for _ in 0..3 {
        app.tick().await;
    }

    assert!(suspended(&app).await.is_some_and(|r| r.contains("HTTP 410")), "{:?}", suspended(&app).await);
    for m in &new {
        let status = app.status(&m.id).await;
        assert_eq!((status.state.as_str(), status.attempts), ("retrying", 0), "{}: no meeting pays for it", m.id);
    }
}

#[tokio::test]
async fn several_departed_organizers_do_not_suspend_while_a_known_registration_answers() {
    let app = spawn_app_with(|s| s.sync.max_attempts = 2).await;
    let at = |n: usize, org: &str| SimMeeting::new(&format!("evt-{n}"), org, &format!("MSp{n:04}"));
    for n in 1..=3 {
        app.listed(at(n, "org-stays"));
    }
    app.tick().await;
    app.settle().await;
    app.sim.depart_organizer("org-left-1");
    app.sim.depart_organizer("org-left-2");
    let left: Vec<SimMeeting> =
        (4..=9).map(|n| app.listed(at(n, if n % 2 == 0 { "org-left-1" } else { "org-left-2" }))).collect();
    let stays = app.listed(at(10, "org-stays"));

    let mut ever_suspended = None;
    let settled = eventually(std::time::Duration::from_secs(60), async || {
        app.tick().await;
        ever_suspended = ever_suspended.take().or(suspended(&app).await);
        app.scalar("SELECT count(*) FROM meetings WHERE state NOT IN ('synced', 'failed')").await == 0
    })
    .await;

    assert!(settled);
    assert_eq!(ever_suspended, None, "a registration regsync knows still answers: the API is there");
    for m in &left {
        assert_eq!(app.status(&m.id).await.state, "failed", "{}", m.id);
    }
    assert_eq!(app.status(&stays.id).await.state, "synced");
}
