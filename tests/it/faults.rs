//! Graph and identity-platform faults: each error class of the README's failure table,
//! and the exactly-once rules under unknown outcomes and crashes.

use std::time::Duration;

use regsync::store;
use regsync_sim::{Fault, TokenFault};

use crate::helpers::{eventually, meeting, spawn_app, spawn_app_with, TestApp};

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
        state: store::NextState::Failed,
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
async fn a_revoked_token_is_refreshed_once_and_the_call_retried() {
    let app = spawn_app().await;
    let (a, b) = (meeting(30), meeting(31));
    app.sim.upsert_meeting(a.clone());
    app.tick().await;
    app.sim.revoke_tokens();

    app.sim.upsert_meeting(b.clone());
    app.tick().await;

    assert_eq!(app.calls_for(&b), ["POST 401", "POST 201"]);
    assert_eq!(app.sim.stats().tokens_issued, 2);
    assert_eq!(app.status(&b.id).await.state, "synced");
}

#[tokio::test]
async fn a_refused_token_stops_graph_calls_reports_the_fix_and_burns_no_attempt() {
    let app = spawn_app().await;
    app.sim.seed(10);
    app.sim.fail_next_token(TokenFault {
        status: 401,
        error: "invalid_client".into(),
        description: "AADSTS7000222: The provided client secret keys are expired.".into(),
    });

    let report = app.tick().await;

    let error = report.error.expect("the cycle reports the token failure");
    assert!(error.contains("client secret has expired"), "{error}");
    assert!(app.sim.log().is_empty(), "no Graph request without a token");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE attempts > 0").await, 0);
    assert_eq!(
        app.scalar("SELECT count(*) FROM ops.sync_runs WHERE status = 'failed' AND error LIKE '%client secret%'").await,
        1
    );
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'in_flight'").await, 0);
}

/// The re-send after a 401 passes the same checks as every send: a hold
/// that began while the fresh token was being fetched keeps it back.
#[tokio::test]
async fn the_resend_after_a_401_waits_for_a_throttle_hold_like_any_send() {
    let app = spawn_app().await;
    app.listed(meeting(32));
    app.ctx.graph.permit().await.expect("a token in the cache");
    app.sim.delay_tokens(Duration::from_millis(800));
    app.sim.fail_next(Some("POST"), Fault::Status { status: 401, retry_after: None });

    let tick = tokio::spawn({
        let ctx = app.ctx.clone();
        async move { regsync::sync::tick(&ctx).await }
    });
    assert!(
        eventually(Duration::from_secs(30), async || app.sim.log().iter().any(|r| r.status == 401)).await,
        "the POST was never answered 401"
    );
    // Another replica was throttled meanwhile: the deployment holds.
    let hold_until = tokio::time::Instant::now() + Duration::from_secs(3);
    sqlx::query("UPDATE graph_throttle SET throttled_until = now() + interval '3 seconds'")
        .execute(&app.pool)
        .await
        .expect("hold");
    tokio::time::timeout(Duration::from_secs(30), tick).await.expect("tick ended").expect("joined").expect("tick");

    let early: Vec<_> = app.sim.log().into_iter().filter(|r| r.status != 401 && r.at < hold_until).collect();
    assert!(early.is_empty(), "sent during the hold: {early:?}");
}

#[tokio::test]
async fn the_token_endpoints_retry_after_is_honoured() {
    let app = spawn_app().await;
    app.sim.token_retry_after("2");
    app.sim.fail_next_token(TokenFault::unavailable());

    let refused = app.ctx.graph.permit().await.err().expect("refused");
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let inside = app.ctx.graph.permit().await;
    let requests_inside = app.sim.stats().token_requests;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let after = app.ctx.graph.permit().await;

    assert_eq!(refused.retry_after(), Some(Duration::from_secs(2)));
    assert!(inside.is_err() && requests_inside == 1, "no token request inside Retry-After");
    assert!(after.is_ok(), "a token once Retry-After has passed");
}

/// A server that answers every request with `status` and `Location: to`,
/// and one that records every request it gets.
async fn redirect_to_a_recorder(status: u16) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let recorder = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let recorder_addr = recorder.local_addr().expect("addr");
    let log = seen.clone();
    let record = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
        let log = log.clone();
        async move {
            log.lock().expect("log").push(format!("{headers:?} {body}"));
            StatusCode::NOT_FOUND
        }
    });
    tokio::spawn(async move { axum::serve(recorder, record).await });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let redirector_addr = redirector.local_addr().expect("addr");
    let redirect = axum::Router::new().fallback(move || async move {
        let status = StatusCode::from_u16(status).expect("a status");
        (status, [("location", format!("http://{recorder_addr}/elsewhere"))])
    });
    tokio::spawn(async move { axum::serve(redirector, redirect).await });
    (format!("http://{redirector_addr}"), seen)
}

#[tokio::test]
async fn no_credential_follows_a_redirect_to_another_host() {
    let (platform, platform_seen) = redirect_to_a_recorder(302).await;
    let (login, login_seen) = redirect_to_a_recorder(307).await;
    let app = spawn_app_with(|s| {
        s.source.base_url = Some(platform.clone());
        s.source.auth = regsync::config::SourceAuth::ApiKey;
        s.source.token = Some("platform-key-value".to_owned().into());
        s.graph.authority_url = login.clone();
    })
    .await;

    let report = app.tick().await;
    let token = app.ctx.graph.permit().await;

    assert!(report.poll.partial.is_some(), "the redirected listing is not read");
    assert!(token.is_err(), "the redirected token request fails");
    let leaked: Vec<String> = platform_seen
        .lock()
        .expect("log")
        .iter()
        .chain(login_seen.lock().expect("log").iter())
        .filter(|r| r.contains("platform-key-value") || r.contains(regsync_sim::CLIENT_SECRET))
        .cloned()
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}
