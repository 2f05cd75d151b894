//! Whose trouble a refusal is: one departed organizer (Graph answers 404
//! `UnknownError` for a user it cannot find) fails that organizer's rows,
//! with a reason naming them, and never stops anyone else.

use regsync_sim::SimMeeting;

use crate::helpers::{eventually, meeting, spawn_app_with, TestApp};

async fn suspended(app: &TestApp) -> Option<String> {
    sqlx::query_scalar("SELECT reason FROM ops.graph_suspension").fetch_one(&app.pool).await.expect("the view")
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
