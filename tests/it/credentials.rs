//! Credentials toward Graph and the identity platform: a revoked token is
//! refreshed once, a refused one stops Graph calls with the fix, the re-send
//! after a 401 passes every check, the token endpoint's Retry-After is
//! honoured, and no credential follows a redirect.

use std::time::Duration;

use regsync_sim::{Fault, TokenFault};

use crate::helpers::{eventually, meeting, spawn_app, spawn_app_with};

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
