//! Pushed changes (`POST /hooks/platform`): a signed delivery makes its item
//! due at once, in every replica; a forged, replayed, stale, oversized or
//! invalid one, or a flood, is refused and changes nothing.

use std::net::SocketAddr;
use std::time::Duration;

use regsync::config::Settings;
use regsync_sim::{webhook_signature, SimRegistrant};
use serde_json::json;

use crate::helpers::{
    eventually, free_port, fresh_database, meeting, spawn_app_against, spawn_app_with, start_daemon, TestApp,
};
use crate::registrants::with_registrants;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn with_hooks(s: &mut Settings) {
    s.hooks.secret = Some(SECRET.to_owned().into());
    s.hooks.max_body_bytes = 4_096;
}

/// Serves the endpoint over `app`'s context; its URL.
async fn serve_hooks(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = regsync::hooks::router(app.ctx.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/hooks/platform")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Posts `body` signed at `t` with `secret` from `client`; the status.
async fn post(client: &reqwest::Client, url: &str, body: &str, signature: &str) -> u16 {
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header("regsync-signature", signature)
        .body(body.to_owned())
        .send()
        .await
        .expect("answered");
    sent.status().as_u16()
}

async fn meetings(app: &TestApp) -> i64 {
    app.scalar("SELECT count(*) FROM meetings").await
}

#[tokio::test]
async fn a_pushed_meeting_and_registrant_are_read_stored_and_registered_without_a_poll() {
    let app = spawn_app_with(|s| {
        with_hooks(s);
        with_registrants(s);
    })
    .await;
    let url = serve_hooks(&app).await;
    app.sim.send_webhooks_to(&url, SECRET);

    let m = app.listed(meeting(1));
    let person = SimRegistrant::new(&m.id, 1);
    app.sim.upsert_registrant(person.clone());
    assert!(
        eventually(Duration::from_secs(30), async || app.sim.webhook_deliveries().len() == 2).await,
        "both deliveries answered"
    );
    assert!(app.sim.webhook_deliveries().iter().all(|d| d.status == 202), "{:?}", app.sim.webhook_deliveries());
    assert_eq!(app.scalar("SELECT count(*) FROM sync_runs").await, 0, "no poll was made");

    app.settle().await;
    assert_eq!(app.status(&m.id).await.state, "synced");
    assert_eq!(app.calls_for(&m), ["POST 201"]);
    assert_eq!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).len(), 1);

    // The same item again changes nothing and calls Graph for nothing.
    app.sim.upsert_meeting(m.clone());
    assert!(eventually(Duration::from_secs(30), async || app.sim.webhook_deliveries().len() == 3).await);
    app.settle().await;
    assert_eq!(app.calls_for(&m), ["POST 201"]);
}

#[tokio::test]
async fn a_forged_replayed_stale_oversized_or_invalid_delivery_is_refused_and_changes_nothing() {
    let app = spawn_app_with(with_hooks).await;
    let url = serve_hooks(&app).await;
    let client = reqwest::Client::new();
    // Graph knows the meeting; the platform announces nothing itself.
    app.sim.upsert_meeting(meeting(1));
    let item = json!({"kind": "meeting", "id": "evt-1", "item": meeting(1)}).to_string();

    let forged = webhook_signature(b"not-the-secret-not-the-secret!!", now(), item.as_bytes());
    assert_eq!(post(&client, &url, &item, &forged).await, 401, "a wrong secret");
    assert_eq!(post(&client, &url, &item, "t=1,v1=zz").await, 401, "a malformed signature");
    let mut tampered = webhook_signature(SECRET.as_bytes(), now(), item.as_bytes());
    tampered.replace_range(tampered.len() - 2.., "00");
    assert_eq!(post(&client, &url, &item, &tampered).await, 401, "a signature of other bytes");
    let stale = now() - 301;
    assert_eq!(post(&client, &url, &item, &webhook_signature(SECRET.as_bytes(), stale, item.as_bytes())).await, 408);
    let large = json!({"kind": "meeting", "id": "evt-1", "item": {"padding": "x".repeat(5_000)}}).to_string();
    assert_eq!(post(&client, &url, &large, &webhook_signature(SECRET.as_bytes(), now(), large.as_bytes())).await, 413);
    let invalid =
        json!({"kind": "meeting", "id": "evt-9", "item": {"id": "evt-9", "organizer_id": "org-1"}}).to_string();
    let signed = webhook_signature(SECRET.as_bytes(), now(), invalid.as_bytes());
    assert_eq!(post(&client, &url, &invalid, &signed).await, 422);
    let rejected: String = sqlx::query_scalar("SELECT reason FROM ops.rejected_items WHERE external_id = 'evt-9'")
        .fetch_one(&app.pool)
        .await
        .expect("the invalid item is recorded");
    assert!(rejected.contains("online_meeting_id"), "{rejected}");
    let unnamed = json!({"kind": "webinar", "id": "evt-1"}).to_string();
    assert_eq!(
        post(&client, &url, &unnamed, &webhook_signature(SECRET.as_bytes(), now(), unnamed.as_bytes())).await,
        422
    );
    assert_eq!(meetings(&app).await, 0, "nothing refused was stored");

    // Accepted once; the same delivery again, at another replica, is a replay.
    let signature = webhook_signature(SECRET.as_bytes(), now(), item.as_bytes());
    assert_eq!(post(&client, &url, &item, &signature).await, 202);
    let other_replica =
        TestApp { sim: app.sim.clone(), pool: app.pool.clone(), settings: app.settings.clone(), ctx: app.replica() };
    let other_url = serve_hooks(&other_replica).await;
    assert_eq!(post(&client, &other_url, &item, &signature).await, 409);
    assert_eq!(meetings(&app).await, 1);
    app.settle().await;
    assert_eq!(app.calls_for(&meeting(1)), ["POST 201"], "registered once");
}

#[tokio::test]
async fn a_flood_from_one_address_is_refused_without_delaying_another_address() {
    let app = spawn_app_with(|s| {
        with_hooks(s);
        s.hooks.client_rate_per_second = 5;
    })
    .await;
    let url = serve_hooks(&app).await;
    let from =
        |ip: [u8; 4]| reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).build().expect("client");
    let (flooder, other) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let body = json!({"kind": "meeting", "id": "evt-1"}).to_string();
    let mut refused = 0;
    for _ in 0..20 {
        // Unsigned: a flood costs the rate check only.
        if post(&flooder, &url, &body, "").await == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 10, "most of a burst of 20 beyond a rate of 5 is refused ({refused})");
    let item = json!({"kind": "meeting", "id": "evt-1", "item": meeting(1)}).to_string();
    let signed = webhook_signature(SECRET.as_bytes(), now(), item.as_bytes());
    assert_eq!(post(&other, &url, &item, &signed).await, 202, "another address is served");
}

#[tokio::test]
async fn a_change_pushed_to_one_replica_is_registered_by_another_woken_by_the_database() {
    let db = fresh_database().await;
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("simulator");
    // This replica only receives the delivery: it never reconciles.
    let receiver = spawn_app_against(sim.clone(), db.clone(), with_hooks).await;
    let url = serve_hooks(&receiver).await;
    // The other polls once at start, then only when woken: its interval is
    // ten minutes and its next poll is on 29 February.
    let listen = format!("127.0.0.1:{}", free_port());
    let _worker = start_daemon(
        &db,
        &sim,
        &listen,
        &[("REGSYNC__SYNC__POLL_SCHEDULE", "0 0 3 29 2 *"), ("REGSYNC__SYNC__RECONCILE_INTERVAL_MS", "600000")],
    );
    let finished_poll =
        async || receiver.scalar("SELECT count(*) FROM sync_runs WHERE finished_at IS NOT NULL").await == 1;
    assert!(eventually(Duration::from_secs(60), finished_poll).await, "the worker polled at start");
    let listening = async || {
        receiver.scalar("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%regsync_due%'").await == 1
    };
    assert!(eventually(Duration::from_secs(30), listening).await, "the worker listens");

    sim.send_webhooks_to(&url, SECRET);
    let m = receiver.listed(meeting(1));
    let synced = async || receiver.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await == 1;
    assert!(eventually(Duration::from_secs(60), synced).await, "the other replica registered it");
    assert_eq!(receiver.calls_for(&m), ["POST 201"]);
    assert_eq!(receiver.scalar("SELECT count(*) FROM sync_runs").await, 1, "without another poll");
}
