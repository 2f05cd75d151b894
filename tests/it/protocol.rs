//! The exactly-once protocol where an outside review found it could fail:
//! an outcome write racing an ingest, lookups made too early, loops without
//! an end, registrations regsync cannot prove are its own, and meetings it
//! first sees cancelled.

use std::time::Duration;

use regsync::store::{self, Outcome};
use regsync_sim::Fault;

use crate::helpers::{eventually, meeting, spawn_app, spawn_app_with, synced_outcome, TestApp};

/// Waits until some session of the test database waits for a row lock.
async fn until_blocked_on_a_lock(app: &TestApp) {
    let blocked = eventually(Duration::from_secs(30), async || {
        app.scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await
            > 0
    })
    .await;
    assert!(blocked, "no session ever waited for the lock");
}

#[tokio::test]
async fn a_platform_change_committed_while_the_outcome_write_waits_makes_the_meeting_due_again() {
    let app = spawn_app().await;
    let m = app.synced(meeting(1)).await;
    store::meetings::retry(&app.pool, Some(&m.id)).await.expect("due again");
    let ttl = app.settings.sync.lease_ttl();
    let claimed = store::claims::claim_due(&app.pool, 1, ttl, 3, uuid::Uuid::new_v4()).await.expect("claim").remove(0);
    // A poll cancels the meeting; its transaction holds the row while the
    // worker's outcome write starts and waits for it.
    let mut poll = app.pool.begin().await.expect("begin");
    sqlx::query("UPDATE meetings SET desired = 'unregistered' WHERE external_id = $1")
        .bind(&m.id)
        .execute(&mut *poll)
        .await
        .expect("cancel");
    let outcome = Outcome { actual: claimed.actual.clone(), checked: true, ..synced_outcome() };
    let finish = tokio::spawn({
        let (pool, claimed) = (app.pool.clone(), claimed.clone());
        async move { store::outcome::record_outcome(&pool, &claimed, &outcome, &[]).await }
    });
    until_blocked_on_a_lock(&app).await;
    poll.commit().await.expect("commit the poll");
    let applied = finish.await.expect("joined").expect("outcome written");

    assert!(applied);
    let status = app.status(&m.id).await;
    assert_eq!((status.desired.as_str(), status.state.as_str()), ("unregistered", "pending"));
    app.settle().await;
    assert!(app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_none(), "the cancel was carried out");
}

/// A request Graph carries out after the client gave up on it: the client's
/// timeout is 2 s, Graph acts 2.5 s after the request arrived.
async fn a_create_that_acts_after_the_timeout(app: &TestApp) -> regsync_sim::SimMeeting {
    let m = app.listed(meeting(2));
    app.sim.fail_next(Some("POST"), Fault::ActLate(Duration::from_millis(2_500)));
    app.tick().await;
    let unknown = app.status(&m.id).await;
    assert!(unknown.needs_lookup, "the timed-out create's outcome is unknown");
    m
}

fn late_acting_graph(s: &mut regsync::config::Settings) {
    s.graph.timeout_ms = 2_000;
    s.sync.lease_ttl_ms = 8_000;
}

/// Reconciles until settled, then checks Graph holds exactly what the
/// platform wants and the database says so.
async fn settle_and_check(app: &TestApp, m: &regsync_sim::SimMeeting, registered: bool) {
    app.settle().await;
    tokio::time::sleep(Duration::from_millis(700)).await; // past the moment Graph acts
    app.settle().await;
    let held = app.sim.registration(&m.organizer_id, &m.online_meeting_id);
    let status = app.status(&m.id).await;
    assert_eq!(held.is_some(), registered, "Graph's side: {held:?}");
    assert_eq!(status.registration_id, held.map(|h| h.id), "the database records what Graph holds");
    assert_eq!(status.state, "synced");
}

#[tokio::test]
async fn a_cancel_ingested_after_an_unknown_outcome_still_waits_before_its_lookup() {
    let app = spawn_app_with(late_acting_graph).await;
    let m = a_create_that_acts_after_the_timeout(&app).await;

    app.sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
    let right_after = app.tick().await;

    assert_eq!(right_after.reconcile.claimed, 0, "no lookup before the request timeout has passed again");
    settle_and_check(&app, &m, false).await;
}

#[tokio::test]
async fn an_operator_retry_after_an_unknown_outcome_still_waits_before_its_lookup() {
    let app = spawn_app_with(late_acting_graph).await;
    let m = a_create_that_acts_after_the_timeout(&app).await;

    store::meetings::retry(&app.pool, Some(&m.id)).await.expect("retry");
    let right_after = app.reconcile().await;

    assert_eq!(right_after.claimed, 0, "no lookup before the request timeout has passed again");
    settle_and_check(&app, &m, true).await;
}

#[tokio::test]
async fn a_409_to_a_lookup_or_a_delete_backs_off_counts_attempts_and_ends_failed() {
    let app = spawn_app_with(|s| s.sync.max_attempts = 3).await;
    let (looked_up, deleted) = (meeting(3), meeting(4));
    app.sim.upsert_meeting(looked_up.clone());
    app.sim.upsert_meeting(deleted.clone());
    app.tick().await;
    app.sim.update_meeting(&deleted.id, |m| m.status = "cancelled".into());
    sqlx::query("UPDATE meetings SET needs_lookup = true, lookup_organizer_id = organizer_id, lookup_meeting_id = online_meeting_id WHERE external_id = $1")
        .bind(&looked_up.id)
        .execute(&app.pool)
        .await
        .expect("an unknown outcome");
    store::meetings::retry(&app.pool, Some(&looked_up.id)).await.expect("due");
    for _ in 0..40 {
        app.sim.fail_next(Some("GET"), Fault::Status { status: 409, retry_after: None });
        app.sim.fail_next(Some("DELETE"), Fault::Status { status: 409, retry_after: None });
    }

    app.tick().await;
    app.settle().await;

    for m in [&looked_up, &deleted] {
        let status = app.status(&m.id).await;
        assert_eq!((status.state.as_str(), status.attempts), ("failed", 3), "{}", m.id);
        assert!(app.calls_for(m).len() <= 5, "{}: {:?}", m.id, app.calls_for(m));
    }
}

#[tokio::test]
async fn a_408_is_transient_and_looked_up_like_any_timeout() {
    let app = spawn_app_with(|s| {
        s.sync.backoff_base_ms = 60_000;
        s.sync.backoff_max_ms = 60_000;
    })
    .await;
    let m = app.listed(meeting(5));
    app.sim.fail_next(Some("POST"), Fault::Status { status: 408, retry_after: None });

    app.tick().await;

    let status = app.status(&m.id).await;
    assert_eq!((status.state.as_str(), status.attempts, status.needs_lookup), ("retrying", 1, true));
}

#[tokio::test]
async fn a_registration_whose_body_has_no_odata_type_is_never_adopted_or_deleted() {
    let app = spawn_app().await;
    let (created, cancelled) = (meeting(6), meeting(7));
    app.sim.upsert_meeting(created.clone());
    let mut first_seen_cancelled = cancelled.clone();
    first_seen_cancelled.status = "cancelled".into();
    app.sim.upsert_meeting(first_seen_cancelled);
    for m in [&created, &cancelled] {
        app.sim.put_untyped_registration(&m.organizer_id, &m.online_meeting_id);
    }

    app.tick().await;

    let status = app.status(&created.id).await;
    assert_eq!(status.state, "failed");
    assert!(status.last_error.unwrap_or_default().contains("registration of another kind"));
    assert_eq!(status.registration_id, None);
    assert!(app.sim.registration(&cancelled.organizer_id, &cancelled.online_meeting_id).is_some(), "not deleted");
    assert_eq!(app.status(&cancelled.id).await.state, "synced");
}

#[tokio::test]
async fn a_meeting_first_seen_cancelled_has_an_earlier_external_registration_removed_once() {
    let app = spawn_app().await;
    let (orphan, foreign, clean) = (meeting(8), meeting(9), meeting(10));
    for m in [&orphan, &foreign, &clean] {
        let mut m = m.clone();
        m.status = "cancelled".into();
        app.sim.upsert_meeting(m);
    }
    app.sim.put_registration(&orphan.organizer_id, &orphan.online_meeting_id, "everyone", false);
    app.sim.put_registration(&foreign.organizer_id, &foreign.online_meeting_id, "everyone", true);

    app.tick().await;
    app.tick().await;

    assert_eq!(app.calls_for(&orphan), ["GET 200", "DELETE 204"]);
    assert_eq!(app.calls_for(&foreign), ["GET 200"], "another kind is left alone");
    assert_eq!(app.calls_for(&clean), ["GET 404"]);
    assert!(app.sim.registration(&orphan.organizer_id, &orphan.online_meeting_id).is_none());
    assert!(app.sim.registration(&foreign.organizer_id, &foreign.online_meeting_id).is_some());
    for m in [&orphan, &foreign, &clean] {
        assert_eq!(app.status(&m.id).await.state, "synced", "{}", m.id);
    }
}

#[tokio::test]
async fn a_meeting_missing_from_the_listing_has_an_earlier_external_registration_removed() {
    let app = spawn_app_with(|s| s.sync.on_missing = regsync::config::OnMissing::Unregister).await;
    let (kept, gone) = (meeting(11), meeting(12));
    app.sim.upsert_meeting(kept.clone());
    app.sim.upsert_meeting(gone.clone());
    // regsync first meets `gone` while an earlier registration exists and
    // the meeting is already off the listing.
    sqlx::query(
        "INSERT INTO meetings (external_id, organizer_id, online_meeting_id, allowed_registrant, desired, state)
         VALUES ($1, $2, $3, 'everyone', 'registered', 'synced')",
    )
    .bind(&gone.id)
    .bind(&gone.organizer_id)
    .bind(&gone.online_meeting_id)
    .execute(&app.pool)
    .await
    .expect("a row restored without its registration");
    app.sim.put_registration(&gone.organizer_id, &gone.online_meeting_id, "everyone", false);
    app.sim.remove_meeting(&gone.id);

    app.tick().await;

    assert_eq!(app.calls_for(&gone), ["GET 200", "DELETE 204"]);
    assert!(app.sim.registration(&gone.organizer_id, &gone.online_meeting_id).is_none());
}

#[tokio::test]
async fn a_meeting_whose_worker_stops_every_time_is_parked_as_failed() {
    let app = spawn_app_with(|s| s.sync.max_attempts = 2).await;
    let m = app.listed(meeting(13));
    regsync::sync::ingest::poll(&app.ctx).await.expect("poll");
    let ttl = app.settings.sync.lease_ttl();

    let mut claims = 0;
    for _ in 0..5 {
        // Each worker claims the meeting and dies before recording anything.
        let claimed = store::claims::claim_due(&app.pool, 1, ttl, 2, uuid::Uuid::new_v4()).await.expect("claim");
        claims += claimed.len();
        app.expire_leases().await;
    }

    assert_eq!(claims, 2, "claimed by the first worker and one successor, then parked");
    let status = app.status(&m.id).await;
    assert_eq!((status.state.as_str(), status.attempts), ("failed", 2));
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("stopped 2 times") && error.contains("regsync retry evt-13"), "{error}");
}

#[tokio::test]
async fn a_token_lifetime_of_any_size_is_taken_without_a_panic() {
    let app = spawn_app().await;
    app.sim.token_lifetime(u64::MAX);
    app.sim.upsert_meeting(meeting(14));

    let report = app.tick().await;

    assert_eq!((report.reconcile.created, report.error), (1, None));
}

/// Two platform meetings for one Teams meeting.
fn twins() -> (regsync_sim::SimMeeting, regsync_sim::SimMeeting) {
    let first = meeting(20);
    let mut second = meeting(21);
    second.organizer_id = first.organizer_id.clone();
    second.online_meeting_id = first.online_meeting_id.clone();
    (first, second)
}

#[tokio::test]
async fn a_second_platform_meeting_for_the_same_teams_meeting_is_rejected_with_a_reason() {
    let app = spawn_app().await;
    let (first, second) = twins();
    app.sim.upsert_meeting(first.clone());
    app.sim.upsert_meeting(second.clone());

    app.tick().await;
    app.sim.update_meeting(&second.id, |m| m.status = "cancelled".into());
    app.tick().await;

    assert_eq!(app.calls_for(&first), ["POST 201"], "one registration, never deleted");
    assert_eq!(app.status(&first.id).await.state, "synced");
    let cancelled = app.status(&second.id).await;
    assert_eq!((cancelled.state.as_str(), cancelled.registration_id), ("synced", None));
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM ops.rejected_items WHERE external_id = 'evt-21' LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .expect("rejected with a reason");
    assert!(reason.contains("evt-20") && reason.contains(&first.online_meeting_id), "{reason}");
}

#[tokio::test]
async fn a_cancel_never_deletes_a_registration_another_active_meeting_took_over() {
    // One meeting per page, so the move and the new mapping arrive in turn.
    let app = spawn_app_with(|s| s.source.page_size = 1).await;
    let (first, second) = twins();
    app.sim.upsert_meeting(first.clone());
    app.tick().await;
    let registration = app.status(&first.id).await.registration_id.expect("registered");

    // The platform moves the first meeting to another Teams meeting and maps
    // the second one to the Teams meeting the first one had.
    app.sim.update_meeting(&first.id, |m| m.online_meeting_id = "MSp-moved".into());
    app.sim.upsert_meeting(second.clone());
    app.tick().await;
    app.settle().await;

    let held = app.sim.registration(&second.organizer_id, &second.online_meeting_id).expect("still registered");
    assert_eq!(held.id, registration, "handed over, not deleted and created again");
    assert_eq!(app.status(&second.id).await.registration_id.as_deref(), Some(registration.as_str()));
    assert!(app.sim.registration(&first.organizer_id, "MSp-moved").is_some());
    assert_eq!(app.sim.stats().registrations, 2);
    assert!(!app.sim.log().iter().any(|r| r.method == "DELETE"), "{:?}", app.sim.log());
}

#[tokio::test]
async fn ids_that_differ_only_by_surrounding_whitespace_are_one_meeting() {
    let app = spawn_app().await;
    let m = app.listed(meeting(22));
    let mut padded = m.clone();
    padded.id = format!("{} ", m.id);
    app.sim.upsert_meeting(padded);

    app.tick().await;

    assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 1);
    assert_eq!(app.calls_for(&m), ["POST 201"]);
}

#[tokio::test]
async fn commits_are_durable_even_where_the_database_turns_synchronous_commit_off() {
    let app = spawn_app().await;
    sqlx::query(
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$",
    )
    .execute(&app.pool)
    .await
    .expect("the database's default");
    let pool = regsync::store::connect(&app.settings.database).expect("pool");

    let setting: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&pool).await.expect("show");

    assert_eq!(setting, "on", "the intent commit must not be lost in a server crash");
}
