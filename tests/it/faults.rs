//! Graph faults: each error class of the README's failure table,
//! and the exactly-once rules under unknown outcomes and crashes.

use std::time::Duration;

use regsync::store;
use regsync_sim::Fault;

use crate::helpers::{meeting, spawn_app, spawn_app_with, TestApp};

/// Retries wait a minute, so a test can look at the state between attempts.
fn slow_backoff(s: &mut regsync::config::Settings) {
    s.sync.backoff_base_ms = 60_000;
    s.sync.backoff_max_ms = 60_000;
}

/// Makes every waiting retry due now, as if its backoff had passed.
async fn time_passes(app: &TestApp) {
    sqlx::query("UPDATE meetings SET next_attempt_at = now() WHERE state = 'retrying'")
        .execute(&app.pool)
        .await
        .expect("due");
}

#[tokio::test]
async fn a_429_holds_every_request_for_retry_after_and_costs_no_attempt() {
    let app = spawn_app().await;
    let m = app.listed(meeting(1));
    // Long enough that the next reconcile comes inside it on a loaded machine.
    app.sim.fail_next(Some("POST"), Fault::Status { status: 429, retry_after: Some("2".into()) });

    app.tick().await;
    let throttled = app.status(&m.id).await;
    let immediate = app.reconcile().await;
    app.settle().await;

    assert_eq!((throttled.state.as_str(), throttled.attempts), ("retrying", 0));
    assert_eq!(immediate.claimed, 0, "nothing is claimed while Graph holds us");
    assert!(app.scalar("SELECT count(*) FROM graph_throttle WHERE throttled_until > '2000-01-01'").await == 1);
    assert_eq!(app.calls_for(&m), ["POST 429", "POST 201"], "a 429 is known not to have acted: no lookup");
    assert_eq!(app.sim.stats().requests_inside_retry_after, 0);
    let done = app.status(&m.id).await;
    assert_eq!((done.state.as_str(), done.attempts), ("synced", 0));
}

#[tokio::test]
async fn a_server_error_is_retried_with_a_lookup_first_because_it_may_have_acted() {
    let app = spawn_app_with(slow_backoff).await;
    let m = app.listed(meeting(2));
    app.sim.fail_next(Some("POST"), Fault::Status { status: 500, retry_after: None });

    app.tick().await;
    let after_failure = app.status(&m.id).await;
    time_passes(&app).await;
    app.settle().await;

    assert_eq!((after_failure.state.as_str(), after_failure.attempts), ("retrying", 1));
    assert!(after_failure.needs_lookup);
    assert_eq!(after_failure.last_http_status, Some(500));
    assert_eq!(app.calls_for(&m), ["POST 500", "GET 404", "POST 201"]);
    assert_eq!(app.status(&m.id).await.state, "synced");
}

#[tokio::test]
async fn attempts_exhausted_park_the_meeting_as_failed_with_the_last_error() {
    let app = spawn_app_with(|s| s.sync.max_attempts = 2).await;
    let m = app.listed(meeting(3));
    for _ in 0..4 {
        app.sim.fail_next(None, Fault::Status { status: 502, retry_after: None });
    }

    app.tick().await;
    app.settle().await;

    let status = app.status(&m.id).await;
    assert_eq!(status.state, "failed");
    let error = status.last_error.unwrap_or_default();
    assert!(error.contains("gave up after 2 attempts") && error.contains("regsync retry evt-3"), "{error}");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 1, "a failed meeting is kept");
}

#[tokio::test]
async fn permanent_errors_park_at_once_with_an_actionable_message() {
    let app = spawn_app().await;
    let (forbidden, unknown, bad) = (meeting(10), meeting(11), meeting(12));
    for m in [&forbidden, &unknown] {
        app.sim.upsert_meeting(m.clone());
    }
    app.sim.forbid_organizer(&forbidden.organizer_id);
    app.sim.forget_online_meeting(&unknown.organizer_id, &unknown.online_meeting_id);

    app.tick().await;
    app.sim.upsert_meeting(bad.clone());
    app.sim.fail_next(Some("POST"), Fault::Status { status: 400, retry_after: None });
    app.tick().await;

    for (m, status, hint) in
        [(&forbidden, 403, "grant the application access policy"), (&unknown, 404, "no such online meeting")]
    {
        let s = app.status(&m.id).await;
        assert_eq!((s.state.as_str(), s.last_http_status), ("failed", Some(status)), "{}", m.id);
        assert!(s.last_error.as_deref().unwrap_or_default().contains(hint), "{}: {:?}", m.id, s.last_error);
        assert_eq!(app.calls_for(m).len(), 1, "{}: one call, no retry", m.id);
    }
    let s = app.status(&bad.id).await;
    assert_eq!((s.state.as_str(), s.last_http_status), ("failed", Some(400)));
    assert_eq!(app.calls_for(&bad), ["POST 400"]);
}

#[tokio::test]
async fn a_lost_response_after_graph_acted_is_resolved_by_a_lookup_without_a_second_post() {
    let app = spawn_app_with(slow_backoff).await;
    let m = app.listed(meeting(4));
    app.sim.fail_next(Some("POST"), Fault::LostResponse);

    app.tick().await;
    let ambiguous = app.status(&m.id).await;
    time_passes(&app).await;
    app.settle().await;

    assert!(ambiguous.needs_lookup);
    assert_eq!(app.calls_for(&m), ["POST 0", "GET 200"]);
    let held = app.sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered");
    assert_eq!(app.status(&m.id).await.registration_id.as_deref(), Some(held.id.as_str()));
}

#[tokio::test]
async fn a_timeout_after_graph_acted_is_resolved_by_a_lookup() {
    let app = spawn_app_with(|s| s.graph.timeout_ms = 300).await;
    let m = app.listed(meeting(5));
    app.sim.fail_next(Some("POST"), Fault::SlowResponse(Duration::from_millis(1_500)));

    app.tick().await;
    app.settle().await;

    assert_eq!(app.calls_for(&m), ["POST 201", "GET 200"], "the POST acted; its answer came too late");
    assert_eq!(app.status(&m.id).await.state, "synced");
    assert_eq!(app.sim.stats().posts_while_registered, 0);
}

#[tokio::test]
async fn a_504_after_graph_acted_is_resolved_by_a_lookup() {
    let app = spawn_app().await;
    let m = app.listed(meeting(6));
    app.sim.fail_next(Some("POST"), Fault::ActThenStatus(504));

    app.tick().await;
    app.settle().await;

    assert_eq!(app.calls_for(&m), ["POST 504", "GET 200"]);
    assert!(app.status(&m.id).await.registration_id.is_some());
}

#[tokio::test]
async fn a_409_adopts_the_registration_graph_already_holds() {
    let app = spawn_app().await;
    let m = app.listed(meeting(7));
    let existing = app.sim.put_registration(&m.organizer_id, &m.online_meeting_id, "everyone", false);

    app.tick().await;

    assert_eq!(app.calls_for(&m), ["POST 409", "GET 200"]);
    let status = app.status(&m.id).await;
    assert_eq!((status.state.as_str(), status.registration_id.as_deref()), ("synced", Some(existing.as_str())));
}

#[tokio::test]
async fn a_registration_of_another_kind_is_never_deleted() {
    let app = spawn_app().await;
    let m = app.listed(meeting(8));
    app.sim.put_registration(&m.organizer_id, &m.online_meeting_id, "everyone", true);

    app.tick().await;
    app.sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
    app.tick().await;

    assert_eq!(app.calls_for(&m), ["POST 409", "GET 200"]);
    let held = app.sim.registration(&m.organizer_id, &m.online_meeting_id).expect("still there");
    assert_eq!(held.odata_type, "#microsoft.graph.meetingRegistration");
    let status = app.status(&m.id).await;
    assert_eq!(status.desired, "unregistered");
    assert_eq!(status.state, "synced", "cancelled, and regsync holds nothing there");
}

#[tokio::test]
async fn a_foreign_registration_fails_the_meeting_with_a_clear_reason() {
    let app = spawn_app().await;
    let m = app.listed(meeting(9));
    app.sim.put_registration(&m.organizer_id, &m.online_meeting_id, "everyone", true);

    app.tick().await;

    let status = app.status(&m.id).await;
    assert_eq!(status.state, "failed");
    assert!(status.last_error.unwrap_or_default().contains("registration of another kind"));
}

/// A worker that committed its intent, sent the POST and died before
/// recording the outcome: the next owner must find the registration by GET.
#[tokio::test]
async fn a_crash_between_the_call_and_the_outcome_is_recovered_without_a_duplicate() {
    let app = spawn_app().await;
    let m = meeting(20);
    let claimed = app.claim_listed(&m).await;
    assert_eq!(app.commit_create_intent(&claimed).await, store::SendGate::Open { probe: false });
    let permit = app.ctx.graph.permit().await.expect("a token");
    app.ctx
        .graph
        .create(permit, &claimed.location, claimed.allowed_registrant, &mut Vec::new())
        .await
        .expect("created");
    // The process dies here. Its lease runs out.
    app.expire_leases().await;

    app.settle().await;

    assert_eq!(app.calls_for(&m), ["POST 201", "GET 200"]);
    let held = app.sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered");
    let status = app.status(&m.id).await;
    assert_eq!(status.registration_id.as_deref(), Some(held.id.as_str()));
    assert_eq!(status.attempts, 0, "synced resets attempts");
}

/// Died after the intent, before sending: the lookup finds nothing and the
/// one POST follows.
#[tokio::test]
async fn a_crash_before_the_send_is_recovered_with_exactly_one_post() {
    let app = spawn_app().await;
    let m = meeting(21);
    let claimed = app.claim_listed(&m).await;
    assert_eq!(app.commit_create_intent(&claimed).await, store::SendGate::Open { probe: false });
    app.expire_leases().await;

    app.settle().await;

    assert_eq!(app.calls_for(&m), ["GET 404", "POST 201"]);
}

/// The old owner comes back after its lease passed on: its outcome write is
/// fenced off and changes nothing.
#[tokio::test]
async fn a_stale_worker_cannot_overwrite_the_new_owners_outcome() {
    let app = spawn_app().await;
    let stale = app.claim_listed(&meeting(22)).await;
    app.expire_leases().await;
    app.settle().await;
    let synced = app.status("evt-22").await;

    let outcome = store::Outcome {
        state: regsync::domain::RowState::Failed,
        actual: None,
        needs_lookup: false,
        lookup_at: None,
        attempts: 9,
        next_attempt_in: Duration::ZERO,
        last_error: Some("stale".into()),
        last_http_status: None,
        error_category: None,
        checked: false,
        lookup_settle: Duration::ZERO,
    };
    let applied = store::outcome::record_outcome(&app.pool, &stale, &outcome, &[]).await.expect("statement ran");
    let gate = app.commit_create_intent(&stale).await;

    assert!(!applied);
    assert_eq!(gate, store::SendGate::LeaseLost);
    let after = app.status("evt-22").await;
    assert_eq!((after.state, after.registration_id), (synced.state, synced.registration_id));
}

#[tokio::test]
async fn a_429_costs_that_one_request_even_with_requests_waiting_for_its_slot() {
    // One call in flight: the others wait for its slot, each past its claim.
    let app = spawn_app_with(|s| s.graph.max_concurrency = 1).await;
    let listed: Vec<_> = (1..=6).map(|i| app.listed(meeting(i))).collect();
    app.sim.set_rates(regsync_sim::FaultRates { latency: Duration::from_millis(100), ..Default::default() });
    app.sim.fail_next(Some("POST"), Fault::Status { status: 429, retry_after: Some("1".into()) });

    app.tick().await;
    app.settle().await;

    let log = app.sim.log();
    let refused = log.iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 1, "no request waiting for the slot went out into the Retry-After window: {log:?}");
    assert_eq!(log.len(), listed.len() + 1, "each meeting one POST, and the refused one once more");
    assert_eq!(app.sim.stats().requests_inside_retry_after, 0);
}
