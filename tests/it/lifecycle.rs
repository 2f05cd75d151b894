//! A meeting's life: first sync, idle cycles, cancellation, audience
//! changes, moves, vanishing, replicas, shutdown.

use crate::helpers::{eventually, meeting, spawn_app, spawn_app_with};
use regsync::config::{OnMissing, Settings};
use regsync_sim::SimMeeting;

#[tokio::test]
async fn first_sync_registers_every_valid_meeting_exactly_once_with_graphs_id() {
    // Arrange
    let app = spawn_app().await;
    app.sim.seed(120);

    // Act
    let report = app.tick().await;

    // Assert
    assert_eq!(report.poll.seen, 120);
    for i in 1..=120 {
        let m = SimMeeting::generated(i);
        let status = app.status(&m.id).await;
        let posts = app.calls_for(&m).iter().filter(|c| c.starts_with("POST")).count();
        if m.status == "cancelled" {
            assert_eq!(posts, 0, "{}: a cancelled meeting is never registered", m.id);
            assert_eq!(status.registration_id, None);
        } else {
            assert_eq!(posts, 1, "{}: exactly one POST", m.id);
            let held = app.sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered at Graph");
            assert_eq!(status.registration_id.as_deref(), Some(held.id.as_str()), "{}", m.id);
            assert_eq!(held.allowed_registrant, m.allowed_registrant);
        }
        assert_eq!(status.state, "synced", "{}", m.id);
    }
    assert_eq!(app.sim.stats().registrations, 120 - 12);
    assert_eq!(app.scalar("SELECT count(*) FROM ops.graph_calls WHERE method = 'POST'").await, 108);
    assert_eq!(app.scalar("SELECT count(*) FROM ops.sync_runs WHERE status = 'complete' AND created = 108").await, 1);
}

#[tokio::test]
async fn a_second_cycle_without_changes_makes_no_graph_call_and_no_write() {
    let app = spawn_app().await;
    app.sim.seed(40);
    app.tick().await;
    let calls_before = app.sim.log().len();
    // Any write to a row, even one that changes nothing, gives it a new xmin.
    let versions = "SELECT string_agg(xmin::text, ',' ORDER BY id) FROM meetings";
    let versions_before: String = sqlx::query_scalar(versions).fetch_one(&app.pool).await.expect("versions");

    let report = app.tick().await;

    assert_eq!(app.sim.log().len(), calls_before, "no Graph request");
    assert_eq!(report.poll.changed, 0, "no meeting written");
    assert_eq!(report.reconcile.claimed, 0);
    let versions_after: String = sqlx::query_scalar(versions).fetch_one(&app.pool).await.expect("versions");
    assert_eq!(versions_after, versions_before, "no row was written");
}

#[tokio::test]
async fn a_cancelled_meeting_has_its_registration_deleted_once() {
    let app = spawn_app().await;
    let m = app.synced(meeting(1)).await;

    app.sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
    app.tick().await;
    app.tick().await;

    assert_eq!(app.calls_for(&m), ["POST 201", "DELETE 204"]);
    assert!(app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_none());
    let status = app.status(&m.id).await;
    assert_eq!((status.state.as_str(), status.desired.as_str()), ("synced", "unregistered"));
    assert_eq!(status.registration_id, None);
}

#[tokio::test]
async fn an_audience_change_deletes_then_creates_because_graph_cannot_update_it() {
    let app = spawn_app().await;
    let m = app.synced(meeting(2)).await;
    let first = app.status(&m.id).await.registration_id;

    app.sim.update_meeting(&m.id, |m| m.allowed_registrant = "organization".into());
    app.tick().await;

    assert_eq!(app.calls_for(&m), ["POST 201", "DELETE 204", "POST 201"]);
    let held = app.sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered");
    assert_eq!(held.allowed_registrant, "organization");
    let status = app.status(&m.id).await;
    assert_eq!(status.registration_id.as_deref(), Some(held.id.as_str()));
    assert_ne!(status.registration_id, first);
}

#[tokio::test]
async fn a_meeting_moved_to_another_online_meeting_is_deleted_at_the_old_and_created_at_the_new() {
    let app = spawn_app().await;
    let m = app.synced(meeting(3)).await;

    app.sim.update_meeting(&m.id, |m| m.online_meeting_id = "MSpMoved".into());
    app.tick().await;

    assert_eq!(app.calls_for(&m), ["POST 201", "DELETE 204"]);
    assert!(app.sim.registration(&m.organizer_id, "MSpMoved").is_some());
    assert!(app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_none());
    assert_eq!(app.status(&m.id).await.state, "synced");
}

/// Syncs two meetings, then the platform stops listing the second. Returns
/// whether Graph still holds each one's registration, and the second's
/// `desired`.
async fn vanish_one_of_two(on_missing: OnMissing) -> (bool, bool, String) {
    let app = spawn_app_with(|s| s.sync.on_missing = on_missing).await;
    let (a, b) = (meeting(4), meeting(5));
    app.sim.upsert_meeting(a.clone());
    app.sim.upsert_meeting(b.clone());
    app.tick().await;

    app.sim.remove_meeting(&b.id);
    app.tick().await;

    let held = |m: &SimMeeting| app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_some();
    (held(&a), held(&b), app.status(&b.id).await.desired)
}

#[tokio::test]
async fn a_vanished_meeting_is_kept_by_default() {
    assert_eq!(Settings::default().sync.on_missing, OnMissing::Keep);
    let (a_held, b_held, b_desired) = vanish_one_of_two(OnMissing::Keep).await;
    assert!(a_held && b_held);
    assert_eq!(b_desired, "registered");
}

#[tokio::test]
async fn a_vanished_meeting_is_unregistered_when_configured() {
    let (a_held, b_held, b_desired) = vanish_one_of_two(OnMissing::Unregister).await;
    assert!(a_held, "the meeting still listed keeps its registration");
    assert!(!b_held);
    assert_eq!(b_desired, "unregistered");
}

#[tokio::test]
async fn two_replicas_reconciling_at_once_split_the_work_and_post_each_meeting_once() {
    let app = spawn_app_with(|s| s.graph.max_concurrency = 3).await;
    app.sim.seed(150);
    regsync::sync::ingest::poll(&app.ctx).await.expect("poll");
    let other = app.replica();

    let (a, b) = tokio::join!(regsync::sync::reconcile_due(&app.ctx), regsync::sync::reconcile_due(&other));

    let (a, b) = (a.expect("replica a"), b.expect("replica b"));
    assert_eq!(a.synced + b.synced, 150, "every meeting reconciled once");
    let log = app.sim.log();
    let mut posts: Vec<_> = log.iter().filter(|r| r.method == "POST").map(|r| (&r.organizer, &r.meeting)).collect();
    let total = posts.len();
    posts.sort();
    posts.dedup();
    assert_eq!(total, posts.len(), "no meeting was POSTed twice");
    assert_eq!(total, 135);
    assert_eq!(app.sim.stats().posts_while_registered, 0);
}

#[tokio::test]
async fn shutdown_during_a_tick_leaves_no_meeting_leased() {
    let app = spawn_app_with(|s| s.graph.max_concurrency = 2).await;
    app.sim.seed(60);
    app.sim.set_rates(regsync_sim::FaultRates { latency: std::time::Duration::from_millis(20), ..Default::default() });
    let ctx = app.ctx.clone();
    let running = tokio::spawn(async move { regsync::sync::tick(&ctx).await });

    // Let some calls happen, then stop.
    let five_calls = eventually(std::time::Duration::from_secs(60), async || app.sim.log().len() >= 5).await;
    assert!(five_calls, "no five Graph calls within a minute");
    app.ctx.shutdown.cancel();
    let report = tokio::time::timeout(std::time::Duration::from_secs(30), running)
        .await
        .expect("stopped")
        .expect("joined")
        .expect("tick");

    assert!(report.reconcile.synced < 54, "shutdown stopped new claims");
    assert_eq!(
        app.scalar("SELECT count(*) FROM meetings WHERE state = 'in_flight' OR lease_token IS NOT NULL").await,
        0
    );
    let recorded = app.scalar("SELECT count(*) FROM meetings WHERE registration_id IS NOT NULL").await;
    assert_eq!(recorded as usize, app.sim.stats().registrations, "every call's outcome was recorded");
}
