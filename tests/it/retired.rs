//! A registration API that refuses every call (retired, or "not supported")
//! is the deployment's condition: writes stop everywhere, no meeting is
//! recorded as failed or deregistered because of it, and the sync resumes
//! when the API answers again. And the rest of Microsoft's error page:
//! 509 and a 5xx with Retry-After are throttling.

use std::time::Duration;

use regsync_sim::{Fault, Retirement};

use crate::helpers::{eventually, meeting, spawn_app_with, TestApp};

/// The probe interval of these tests.
const PROBE_AFTER: Duration = Duration::from_millis(400);

async fn suspension(app: &TestApp) -> Option<String> {
    sqlx::query_scalar("SELECT reason FROM ops.graph_suspension").fetch_one(&app.pool).await.expect("the view")
}

async fn graph_writes(app: &TestApp) -> usize {
    app.sim.log().iter().filter(|r| r.method != "GET").count()
}

#[tokio::test]
async fn each_retired_mode_suspends_writes_for_the_deployment_and_the_sync_resumes_when_the_api_answers() {
    for mode in [Retirement::Gone, Retirement::NoRoute, Retirement::NotSupported, Retirement::AppPermissionNotSupported]
    {
        let app = spawn_app_with(|s| s.graph.suspended_probe_interval_ms = PROBE_AFTER.as_millis() as u64).await;
        let registered: Vec<_> = (1..=4).map(|n| app.listed(meeting(n))).collect();
        app.tick().await;
        app.settle().await;
        // Two are cancelled (a DELETE each) and two are new (a POST each).
        for m in &registered[..2] {
            app.sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
        }
        let new: Vec<_> = (5..=6).map(|n| app.listed(meeting(n))).collect();
        app.sim.retire_api(Some(mode));

        app.tick().await;
        let refused = app.scalar("SELECT count(*) FROM graph_calls WHERE outcome = 'retired'").await;
        let writes_then = graph_writes(&app).await;
        let again = app.reconcile().await;

        let (status, code, _) = mode.answer();
        let reason = suspension(&app).await.unwrap_or_else(|| panic!("{mode:?}: writes are not suspended"));
        assert!(reason.contains(&format!("HTTP {status} {code}")), "{mode:?}: {reason}");
        assert!(refused >= 1 && refused <= app.settings.graph.max_concurrency as i64, "{mode:?}: {refused} refused");
        assert_eq!((again.claimed, graph_writes(&app).await), (0, writes_then), "{mode:?}: nothing sent while held");
        let failed = app.scalar("SELECT count(*) FROM meetings WHERE state = 'failed' OR attempts > 0").await;
        assert_eq!(failed, 0, "{mode:?}: the API's refusal is no meeting's failure");
        for m in &registered[..2] {
            let cancelled = app.status(&m.id).await;
            assert!(cancelled.registration_id.is_some(), "{mode:?}: {} is not recorded as deregistered", m.id);
            assert!(app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_some());
        }

        let status = regsync::app::status(&app.settings).await.expect("status");
        assert!(status.contains("Graph writes are suspended for the deployment"), "{mode:?}: {status}");

        // Still refusing after the hold: one probe, and writes stay suspended.
        tokio::time::sleep(PROBE_AFTER * 2).await;
        let before_probe = app.sim.log().len();
        app.reconcile().await;
        assert_eq!(app.sim.log().len(), before_probe + 1, "{mode:?}: one probe after the hold");
        assert!(suspension(&app).await.is_some(), "{mode:?}: a refused probe keeps writes suspended");

        // The API answers again: the next probe ends the suspension.
        app.sim.retire_api(None);
        let resumed = eventually(Duration::from_secs(30), async || {
            app.reconcile().await;
            app.scalar("SELECT count(*) FROM meetings WHERE state <> 'synced'").await == 0
        })
        .await;
        assert!(resumed, "{mode:?}: the sync resumes");
        assert_eq!(suspension(&app).await, None, "{mode:?}");
        for m in &registered[..2] {
            assert!(app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_none(), "{mode:?}: removed");
        }
        for m in registered[2..].iter().chain(&new) {
            assert!(app.sim.registration(&m.organizer_id, &m.online_meeting_id).is_some(), "{mode:?}: registered");
        }
        assert_eq!(app.sim.stats().posts_while_registered, 0);
    }
}

#[tokio::test]
async fn a_not_found_code_still_means_no_registration() {
    let app = spawn_app_with(|_| {}).await;
    let m = app.synced(meeting(1)).await;
    app.settle().await;
    app.sim.forget_online_meeting(&m.organizer_id, &m.online_meeting_id);
    app.sim.update_meeting(&m.id, |m| m.online_meeting_id = "MSgone".into());
    app.sim.forget_online_meeting(&m.organizer_id, "MSgone");

    app.tick().await;
    app.settle().await;

    let status = app.status(&m.id).await;
    assert_eq!(status.state, "failed", "an unknown meeting is the meeting's problem");
    assert_eq!(status.last_http_status, Some(404));
    assert_eq!(suspension(&app).await, None, "itemNotFound suspends nothing");
}

#[tokio::test]
async fn a_509_and_a_5xx_with_retry_after_are_throttling_and_cost_no_attempt() {
    for (status, retry_after) in [(509, None), (502, Some("1".to_owned()))] {
        let app = spawn_app_with(|_| {}).await;
        let m = app.listed(meeting(1));
        app.sim.fail_next(Some("POST"), Fault::Status { status, retry_after });

        app.tick().await;
        let throttled = app.status(&m.id).await;
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        app.settle().await;

        assert_eq!((throttled.state.as_str(), throttled.attempts), ("retrying", 0), "{status}");
        let outcome: String = sqlx::query_scalar("SELECT outcome FROM graph_calls ORDER BY id LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .expect("the first call");
        assert_eq!(outcome, "throttled", "{status}");
        assert_eq!(app.status(&m.id).await.state, "synced", "{status}");
        assert_eq!(app.sim.stats().registrations, 1, "{status}");
    }
}

#[tokio::test]
async fn what_microsoft_support_asks_for_is_kept_with_each_call() {
    let app = spawn_app_with(|_| {}).await;
    let m = app.listed(meeting(1));
    app.sim.forbid_organizer(&m.organizer_id);

    app.tick().await;

    let row = sqlx::query_as::<_, (Option<String>, Option<String>, Option<String>, Option<String>)>(
        "SELECT graph_request_id, inner_error->>'request-id', response_date, ags_diagnostic FROM ops.graph_calls",
    )
    .fetch_one(&app.pool)
    .await
    .expect("one call");
    let (request_id, inner_request_id, date, diagnostic) = row;
    assert!(request_id.is_some() && inner_request_id.is_some(), "{request_id:?} {inner_request_id:?}");
    assert!(date.is_some_and(|d| httpdate::parse_http_date(&d).is_ok()), "the Date header");
    assert!(diagnostic.is_some_and(|d| d.contains("ServerInfo")), "x-ms-ags-diagnostic");
}

#[tokio::test]
async fn a_running_daemon_reports_the_suspension_in_readyz_and_metrics_and_clears_it_when_graph_answers() {
    let db = crate::helpers::fresh_database().await;
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(5);
    sim.retire_api(Some(Retirement::NotSupported));
    let listen = format!("127.0.0.1:{}", crate::helpers::free_port());
    let _daemon =
        crate::helpers::start_daemon(&db, &sim, &listen, &[("REGSYNC__GRAPH__SUSPENDED_PROBE_INTERVAL_MS", "1000")]);
    let get = |path: &'static str| {
        let url = format!("http://{listen}{path}");
        async move {
            let response = reqwest::get(url).await.ok()?;
            Some((response.status().as_u16(), response.text().await.unwrap_or_default()))
        }
    };
    let gauge = |body: &str| body.lines().find(|l| l.starts_with("regsync_graph_writes_suspended ")).map(str::to_owned);

    let reported = eventually(Duration::from_secs(60), async || {
        let ready = get("/readyz").await;
        let metrics = get("/metrics").await;
        ready.is_some_and(|(s, b)| s == 503 && b.contains("Graph writes are suspended") && b.contains("notSupported"))
            && metrics.is_some_and(|(_, b)| gauge(&b).as_deref() == Some("regsync_graph_writes_suspended 1"))
    })
    .await;
    assert!(reported, "/readyz and /metrics report the suspension");

    sim.retire_api(None);
    let resumed = eventually(Duration::from_secs(60), async || {
        let ready = get("/readyz").await.is_some_and(|(s, _)| s == 200);
        let metrics = get("/metrics").await;
        ready && metrics.is_some_and(|(_, b)| gauge(&b).as_deref() == Some("regsync_graph_writes_suspended 0"))
    })
    .await;
    assert!(resumed, "the probe succeeds and every report clears");
    assert!(eventually(Duration::from_secs(60), async || sim.stats().registrations == 5).await);
}
