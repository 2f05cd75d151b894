//! Delegated sign-in: `regsync login` through every device-code answer,
//! organizers' own tokens on the `/me` path, sealed refresh tokens that
//! rotate, one refresh at a time across replicas, and a refused sign-in that
//! stops only its organizer.

use std::time::Duration;

use base64::Engine as _;
use regsync::config::{GraphAuth, Settings};
use regsync_sim::DeviceAnswer;

use crate::helpers::{meeting, regsync_cli_within, spawn_app_with, TestApp};

/// A key for `security.encryption_key`.
pub fn encryption_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

pub fn delegated(s: &mut Settings) {
    s.graph.auth = GraphAuth::Delegated;
    s.graph.client_secret = None;
    s.security.encryption_key = Some(encryption_key().into());
}

fn signed_in(oid: &str) -> DeviceAnswer {
    DeviceAnswer::SignedIn { oid: oid.into(), upn: format!("{oid}@contoso.example") }
}

/// Signs `oid` in as `regsync login` does, answering the first poll.
pub async fn sign_in(app: &TestApp, oid: &str) -> String {
    app.sim.script_device_code(vec![signed_in(oid)]);
    regsync::app::login(&app.settings, |_| {}).await.expect("signed in")
}

#[tokio::test]
async fn login_waits_while_pending_slows_down_when_asked_and_stores_the_sign_in_sealed() {
    let app = spawn_app_with(delegated).await;
    app.sim.script_device_code(vec![
        DeviceAnswer::Pending,
        DeviceAnswer::SlowDown,
        DeviceAnswer::Pending,
        signed_in("org-0"),
    ]);
    let mut prompt = String::new();

    let done = regsync::app::login(&app.settings, |p| prompt = p.to_owned()).await.expect("signed in");

    assert!(prompt.contains("https://microsoft.com/devicelogin") && prompt.contains("enter the code"), "{prompt}");
    assert!(done.contains("signed in as org-0@contoso.example (organizer id org-0)"), "{done}");
    assert_eq!(app.sim.stats().device_polls_too_soon, 0, "every poll kept the interval, slowed down after slow_down");
    assert_eq!(app.scalar("SELECT count(*) FROM ops.sign_ins WHERE organizer_id = 'org-0' AND usable").await, 1);
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT sealed_refresh_token FROM sign_ins").fetch_one(&app.pool).await.unwrap();
    for secret in app.sim.issued_secrets() {
        assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()), "a token is stored in the clear");
    }
}

#[tokio::test]
async fn login_ends_with_a_clear_message_when_the_code_expires_or_the_user_declines() {
    let app = spawn_app_with(delegated).await;
    for (answer, expected) in [(DeviceAnswer::Expired, "the code expired"), (DeviceAnswer::Declined, "declined")] {
        app.sim.script_device_code(vec![DeviceAnswer::Pending, answer]);

        let error = regsync::app::login(&app.settings, |_| {}).await.expect_err("no sign-in").to_string();

        assert!(error.contains(expected), "{error}");
    }
    assert_eq!(app.scalar("SELECT count(*) FROM sign_ins").await, 0, "nothing stored");
}

#[tokio::test]
async fn each_organizer_acts_on_its_own_meetings_and_one_without_a_sign_in_fails_until_it_signs_in() {
    let app = spawn_app_with(delegated).await;
    // meeting(n) belongs to org-{n % 3}.
    let meetings: Vec<_> = (1..=9).map(|n| app.listed(meeting(n))).collect();
    sign_in(&app, "org-1").await;
    sign_in(&app, "org-2").await;

    app.tick().await;
    app.settle().await;

    for m in &meetings {
        let status = app.status(&m.id).await;
        if m.organizer_id == "org-0" {
            assert_eq!((status.state.as_str(), status.attempts), ("failed", 0), "{}", m.id);
            let error = status.last_error.unwrap_or_default();
            assert!(error.contains("organizer org-0 has not signed in: run `regsync login`"), "{error}");
        } else {
            assert_eq!(status.state, "synced", "{}", m.id);
            assert!(app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_some());
        }
    }
    assert!(
        app.sim.log().iter().all(|r| r.status != 401 && r.status != 403),
        "each call carried its organizer's token"
    );

    let done = sign_in(&app, "org-0").await;
    app.tick().await;
    app.settle().await;

    assert!(done.contains("3 meeting(s) that waited for this sign-in are due again"), "{done}");
    assert_eq!(app.sim.stats().registrations, 9);
    assert_eq!(app.sim.stats().posts_while_registered, 0);
}

#[tokio::test]
async fn a_revoked_sign_in_stops_only_its_organizer_burns_no_attempt_and_says_how_to_sign_in_again() {
    let app = spawn_app_with(delegated).await;
    app.sim.delegated_token_lifetime(1);
    sign_in(&app, "org-0").await;
    sign_in(&app, "org-1").await;
    app.sim.revoke_sign_in("org-0");
    // The access tokens from the sign-in run out: the next call refreshes.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let mine = app.listed(meeting(3));
    let other = app.listed(meeting(4));
    let mine_too = app.listed(meeting(6));

    app.tick().await;
    app.settle().await;

    for m in [&mine, &mine_too] {
        let status = app.status(&m.id).await;
        assert_eq!((status.state.as_str(), status.attempts), ("failed", 0), "{}", m.id);
        let error = status.last_error.unwrap_or_default();
        assert!(error.contains("invalid_grant") && error.contains("sign in again with `regsync login`"), "{error}");
    }
    assert_eq!(app.status(&other.id).await.state, "synced");
    assert_eq!(app.sim.stats().refreshes, 1, "org-1 refreshed; org-0's refusal is remembered, not asked again");
    let usable: bool = sqlx::query_scalar("SELECT usable FROM ops.sign_ins WHERE organizer_id = 'org-0'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(!usable);

    let status = regsync::app::status(&app.settings).await.expect("status");
    assert!(status.contains("org-0 (org-0@contoso.example): must sign in again: invalid_grant"), "{status}");
    assert!(status.contains("org-1 (org-1@contoso.example): usable"), "{status}");

    let out = regsync::app::logout(&app.settings, "org-0").await.expect("signed out");
    assert!(out.contains("signed out organizer org-0"), "{out}");
    assert!(regsync::app::logout(&app.settings, "org-0").await.is_err(), "a second logout names the problem");
}

#[tokio::test]
async fn two_replicas_sharing_one_sign_in_never_redeem_a_refresh_token_twice() {
    let app = spawn_app_with(delegated).await;
    // Tokens last 3 s (refreshed after 2.4 s), so every round needs a
    // refresh; a slow token endpoint keeps both replicas' refreshes in
    // flight together.
    app.sim.delegated_token_lifetime(3);
    app.sim.delay_tokens(Duration::from_millis(200));
    sign_in(&app, "org-0").await;
    let other = app.replica();
    let organizer = regsync::domain::OrganizerId("org-0".into());

    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        // Both replicas want the organizer's token at the same moment.
        let (a, b) = tokio::join!(app.ctx.permit(&organizer), other.permit(&organizer));
        assert!(a.is_ok() && b.is_ok(), "round {round}: both have a token");
        for n in 0..6 {
            app.listed(meeting(3 * (round * 6 + n + 1)));
        }
        regsync::sync::ingest::poll(&app.ctx).await.expect("poll");
        let (a, b) = tokio::join!(regsync::sync::reconcile_due(&app.ctx), regsync::sync::reconcile_due(&other));
        a.expect("replica A");
        b.expect("replica B");
    }
    app.settle().await;

    let stats = app.sim.stats();
    assert_eq!(stats.refresh_reuses, 0, "no refresh token was presented twice");
    assert_eq!(stats.refreshes, 3, "one refresh per round: the other replica uses the token it stored");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state <> 'synced'").await, 0);
    assert_eq!(stats.registrations, 18);
}

#[tokio::test]
async fn regsync_login_prints_the_code_and_the_signed_in_user() {
    let db = crate::helpers::fresh_database().await;
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.script_device_code(vec![DeviceAnswer::Pending, signed_in("org-0")]);
    let key = encryption_key();

    let out = tokio::task::spawn_blocking(move || {
        let env = [("REGSYNC__GRAPH__AUTH", "delegated"), ("REGSYNC__SECURITY__ENCRYPTION_KEY", key.as_str())];
        regsync_cli_within(&["login"], &db, &sim, &env, Duration::from_secs(60))
    })
    .await
    .expect("joined")
    .expect("login finished");

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains("https://microsoft.com/devicelogin") && lines[0].contains("SIM"), "{stdout}");
    assert!(lines[1].starts_with("signed in as org-0@contoso.example"), "{stdout}");
}

#[tokio::test]
async fn with_delegated_sign_in_organizers_named_by_upn_are_the_signed_in_users_and_join_links_resolve_with_their_tokens(
) {
    let app = spawn_app_with(|s| {
        delegated(s);
        s.source.fields.organizer_upn = "/organizer_email".into();
        s.source.fields.join_url = "/join_url".into();
    })
    .await;
    app.sim.list_by_reference(true);
    app.sim.seed(10); // five organizers; 9 active meetings
                      // Four of the five organizers sign in, with the UPN the platform lists.
    for n in 1..=4 {
        let oid = regsync_sim::SimMeeting::generated(n).organizer_id;
        app.sim.script_device_code(vec![DeviceAnswer::SignedIn { oid: oid.clone(), upn: regsync_sim::upn_of(&oid) }]);
        regsync::app::login(&app.settings, |_| {}).await.expect("signed in");
    }

    app.tick().await;
    app.settle().await;

    let lookups = app.sim.lookups();
    assert!(lookups.iter().all(|l| l.kind == "meeting" && l.status == 200), "no user lookups at Graph: {lookups:?}");
    let absent = regsync_sim::SimMeeting::generated(5).organizer_id;
    let waiting: Vec<(String, String)> =
        sqlx::query_as("SELECT state, last_error FROM meetings WHERE state <> 'synced'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    // evt-5 (evt-10, cancelled, is never looked up).
    assert_eq!(waiting.len(), 1, "the absent organizer's active meeting: {waiting:?}");
    for (state, error) in &waiting {
        assert_eq!(state, "failed");
        assert!(error.contains(&regsync_sim::upn_of(&absent)) && error.contains("regsync login"), "{error}");
    }

    app.sim.script_device_code(vec![DeviceAnswer::SignedIn { oid: absent.clone(), upn: regsync_sim::upn_of(&absent) }]);
    let done = regsync::app::login(&app.settings, |_| {}).await.expect("signed in");
    app.tick().await;
    app.settle().await;

    assert!(done.contains("1 meeting(s) that waited for this sign-in are due again"), "{done}");
    assert_eq!(app.sim.stats().registrations, 9, "every active meeting registered");
}

#[tokio::test]
async fn a_refused_device_code_request_says_what_to_check() {
    let app = spawn_app_with(delegated).await;
    let mut settings = app.settings.clone();
    settings.graph.client_id = Some("not-the-app".into());

    let error = regsync::app::login(&settings, |_| {}).await.expect_err("refused").to_string();

    assert!(error.contains("unauthorized_client") && error.contains("AADSTS700016"), "{error}");
    assert!(error.contains("allow public client flows"), "{error}");
    assert!(error.contains("trace id"), "support's ids: {error}");
}

#[tokio::test]
async fn a_401_drops_the_stored_token_so_the_retry_really_refreshes_and_nobody_is_held() {
    let app = spawn_app_with(delegated).await;
    sign_in(&app, "org-0").await;
    sign_in(&app, "org-1").await;
    let meetings: Vec<_> = [3, 4, 6, 7].into_iter().map(|n| app.listed(meeting(n))).collect();
    // Graph forgets every access token it issued (rotated keys, say).
    app.sim.revoke_tokens();

    let report = app.tick().await;

    assert_eq!(report.error, None, "no process-wide hold");
    for m in &meetings {
        assert_eq!(app.status(&m.id).await.state, "synced", "{}", m.id);
    }
}

#[tokio::test]
async fn one_organizers_refused_token_holds_no_one_else_and_fails_only_their_meetings_naming_them() {
    let app = spawn_app_with(|s| {
        delegated(s);
        s.sync.max_attempts = 2;
    })
    .await;
    sign_in(&app, "org-0").await;
    sign_in(&app, "org-1").await;
    app.sim.refuse_user_tokens("org-0");
    let mine: Vec<_> = [3, 6].into_iter().map(|n| app.listed(meeting(n))).collect();
    let others: Vec<_> = [4, 7, 10, 13].into_iter().map(|n| app.listed(meeting(n))).collect();

    let report = app.tick().await;
    app.settle().await;

    assert_eq!(report.error, None, "org-0's trouble is no process-wide credential failure");
    for m in &others {
        assert_eq!(app.status(&m.id).await.state, "synced", "{}: never waited for org-0", m.id);
    }
    for m in &mine {
        let status = app.status(&m.id).await;
        assert_eq!(status.state, "failed", "{}", m.id);
        let error = status.last_error.unwrap_or_default();
        assert!(error.contains("organizer org-0") && error.contains("regsync login"), "{error}");
    }
    let condition: String = sqlx::query_scalar("SELECT condition FROM ops.organizers WHERE organizer_id = 'org-0'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(condition, "unauthorized", "a 401 after a real refresh is the organizer's condition");

    // A new sign-in ends it and makes their meetings due.
    app.sim.accept_user_tokens("org-0");
    sign_in(&app, "org-0").await;
    app.tick().await;
    app.settle().await;
    for m in &mine {
        assert_eq!(app.status(&m.id).await.state, "synced", "{}", m.id);
    }
}

#[tokio::test]
async fn a_meeting_moved_to_another_organizer_is_removed_at_the_first_with_the_first_organizers_token() {
    let app = spawn_app_with(delegated).await;
    sign_in(&app, "org-0").await;
    sign_in(&app, "org-1").await;
    let m = app.listed(meeting(3)); // org-0
    app.tick().await;
    app.settle().await;
    assert!(app.sim.registration("org-0", &m.online_meeting_id).is_some());

    app.sim.update_meeting(&m.id, |m| {
        m.organizer_id = "org-1".into();
        m.online_meeting_id = "MSpMovedToOrg1".into();
    });
    app.tick().await;
    app.settle().await;

    assert!(app.sim.registration("org-0", &m.online_meeting_id).is_none(), "removed where it was");
    assert!(app.sim.registration("org-1", "MSpMovedToOrg1").is_some(), "registered where it is");
    assert_eq!(app.status(&m.id).await.state, "synced");
    let acting: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT method, organizer_id FROM ops.graph_calls WHERE method IN ('DELETE', 'POST') ORDER BY at",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let acting: Vec<_> = acting.iter().map(|(m, o)| (m.as_str(), o.as_deref().unwrap_or("-"))).collect();
    assert_eq!(
        acting,
        [("POST", "org-0"), ("DELETE", "org-0"), ("POST", "org-1")],
        "each call records whose token it carried"
    );
}

#[tokio::test]
async fn a_logout_stops_a_running_replica_from_acting_with_the_token_it_holds() {
    let app = spawn_app_with(delegated).await;
    sign_in(&app, "org-0").await;
    app.listed(meeting(3));
    app.tick().await; // the replica now holds org-0's access token
    app.settle().await;

    regsync::app::logout(&app.settings, "org-0").await.expect("signed out");
    let after = app.listed(meeting(6)); // org-0 again
    app.tick().await;
    app.settle().await;

    assert!(app.sim.registration("org-0", &after.online_meeting_id).is_none(), "nothing done for org-0");
    let status = app.status(&after.id).await;
    assert_eq!(status.state, "failed");
    assert!(status.last_error.unwrap_or_default().contains("regsync login"));
}
