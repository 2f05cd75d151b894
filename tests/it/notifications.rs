//! Graph change notifications in place of polling statuses: the
//! subscription is made through Graph's validation handshake, renewed
//! before its one-day expiry and made again when Graph removes it; a change
//! made in Teams is announced and reaches the platform once; a forged
//! notification is refused; and a `missed` lifecycle event is followed by a
//! reconcile of the event that finds what was not announced.

use std::time::Duration;

use crate::helpers::{eventually, TestApp};
use crate::registrants::{calls, cycle, listed_webinar, webinar_app};

const CLIENT_STATE: &str = "a-client-state-of-32-characters!";

async fn teams_status(app: &TestApp, registrant: &str) -> Option<String> {
    sqlx::query_scalar("SELECT teams_status FROM ops.registrant_status WHERE external_id = $1")
        .bind(registrant)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

fn statuses_written(app: &TestApp, registrant: &str) -> Vec<String> {
    app.sim
        .write_backs()
        .into_iter()
        .filter(|w| w.registrant_id == registrant && w.body.get("status").is_some())
        .map(|w| w.body["status"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn the_subscription_path_validates_renews_and_a_missed_lifecycle_event_is_followed_by_a_reconcile() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let url = format!("http://{addr}/hooks/graph");
    let app = webinar_app(|s| {
        s.writeback.status_url = "/meetings/{meeting_id}/registrants/{registrant_id}/status".into();
        s.hooks.listen = addr.to_string();
        s.notifications.public_url = url.clone();
        s.notifications.client_state = Some(CLIENT_STATE.to_owned().into());
    })
    .await;
    let router = regsync::hooks::router(app.ctx.clone()).into_make_service_with_connect_info::<std::net::SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, router).await });
    let m = listed_webinar(&app, 1, "published");
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    cycle(&app).await;

    let made = regsync::sync::notifications::maintain(&app.ctx).await.unwrap();
    assert_eq!(made.created, 1, "{made:?}");
    let subscriptions = app.sim.subscriptions();
    assert_eq!(subscriptions.len(), 1, "made through the validation handshake");
    assert_eq!(
        subscriptions[0].resource,
        format!("solutions/virtualEvents/webinars/{}/registrations", m.online_meeting_id)
    );
    assert!(subscriptions[0].expires <= chrono::Utc::now() + chrono::Duration::days(1));
    let polled = regsync::sync::readback::read_back(&app.ctx).await.unwrap();
    assert_eq!(polled.events, 0, "a subscribed event is not polled");

    // A cancellation in Teams is announced, read back, written back once.
    assert!(app.sim.change_registration_in_teams(&m.online_meeting_id, &people[0].id, "canceled"));
    let seen = eventually(Duration::from_secs(20), async || {
        teams_status(&app, &people[0].id).await.as_deref() == Some("cancelled")
    });
    assert!(seen.await, "the notification was acted on: {:?}", app.sim.notifications_sent());
    cycle(&app).await;
    cycle(&app).await;
    assert_eq!(statuses_written(&app, &people[0].id), vec!["cancelled"]);

    // A forgery: the wrong clientState.
    let forged = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"value": [{"subscriptionId": subscriptions[0].id, "clientState": "guess",
            "changeType": "updated", "resource": subscriptions[0].resource}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // Near its expiry, the subscription is renewed, not made again.
    sqlx::query("UPDATE graph_subscriptions SET expires_at = now() + interval '1 hour'")
        .execute(&app.pool)
        .await
        .unwrap();
    let renewed = regsync::sync::notifications::maintain(&app.ctx).await.unwrap();
    assert_eq!((renewed.renewed, renewed.created), (1, 0), "{renewed:?}");
    assert!(app.sim.subscriptions()[0].expires > chrono::Utc::now() + chrono::Duration::hours(23));

    // Notifications lost, then `missed`: the event is read back.
    app.sim.lose_notifications(true);
    assert!(app.sim.change_registration_in_teams(&m.online_meeting_id, &people[1].id, "canceled"));
    assert!(app.sim.send_lifecycle(&m.online_meeting_id, "missed"));
    let caught_up = eventually(Duration::from_secs(20), async || {
        teams_status(&app, &people[1].id).await.as_deref() == Some("cancelled")
    });
    assert!(caught_up.await, "a missed notification is followed by a reconcile");
    cycle(&app).await;
    assert_eq!(statuses_written(&app, &people[1].id), vec!["cancelled"]);

    // Graph removes the subscription: it is made again.
    assert!(app.sim.send_lifecycle(&m.online_meeting_id, "subscriptionRemoved"));
    let forgotten =
        eventually(Duration::from_secs(20), async || app.scalar("SELECT count(*) FROM graph_subscriptions").await == 0);
    assert!(forgotten.await);
    let again = regsync::sync::notifications::maintain(&app.ctx).await.unwrap();
    assert_eq!(again.created, 1);
    assert_eq!(app.sim.subscriptions().len(), 1);
    assert_eq!(calls(&app, "POST subscription"), 2);
    assert_eq!(calls(&app, "POST registration"), 2, "nothing registered twice along the way");
}
