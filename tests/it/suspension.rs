//! A suspension of Graph writes ends only on an answer of the registration
//! API itself, and the probe after a hold is taken only by a request that
//! will really be sent.

use std::time::Duration;

use regsync::store::throttle::{end_recovery, suspend, suspension};

use crate::helpers::spawn_app_with;

#[tokio::test]
async fn only_an_answer_of_the_registration_api_ends_a_suspension_and_any_answer_ends_a_throttle() {
    let app = spawn_app_with(|_| {}).await;
    suspend(&app.pool, "HTTP 410 Gone", Duration::ZERO).await.unwrap();

    // A resolver lookup or a webinar's status answered: says nothing of it.
    end_recovery(&app.pool, false).await.unwrap();
    assert_eq!(suspension(&app.pool).await.unwrap().as_deref(), Some("HTTP 410 Gone"));

    end_recovery(&app.pool, true).await.unwrap();
    assert_eq!(suspension(&app.pool).await.unwrap(), None);

    regsync::store::throttle::hold(&app.pool, Duration::ZERO).await.unwrap();
    end_recovery(&app.pool, false).await.unwrap();
    let recovering: bool =
        sqlx::query_scalar("SELECT recovering FROM graph_throttle").fetch_one(&app.pool).await.unwrap();
    assert!(!recovering, "after a throttle any answer shows Graph takes requests again");
}

#[tokio::test]
async fn a_sender_the_gate_refuses_does_not_take_the_probe() {
    let app = spawn_app_with(|_| {}).await;
    let claimed = crate::registrant_drift::claimed_registrant(&app.pool).await;
    // A hold that has passed: the next sender is the probe.
    regsync::store::throttle::hold(&app.pool, Duration::ZERO).await.unwrap();
    sqlx::query("UPDATE registrants SET lease_token = gen_random_uuid()").execute(&app.pool).await.unwrap();

    let ttl = Duration::from_secs(10);
    let gate = regsync::store::registrants::prepare_send(&app.pool, &claimed, Some("x"), ttl, Duration::from_secs(5))
        .await
        .unwrap();

    assert!(!matches!(gate, regsync::store::Gate::Open { .. }), "{gate:?}");
    let probe_out: bool =
        sqlx::query_scalar("SELECT probe_until IS NOT NULL FROM graph_throttle").fetch_one(&app.pool).await.unwrap();
    assert!(!probe_out, "the probe is left for a sender whose request goes");
}
