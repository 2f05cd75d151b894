//! Refreshing an organizer's sign-in: leased with a deadline, never a
//! transaction held open while the identity platform answers; a refresh
//! whose answer was lost is said to be so when the next one is refused.

use std::time::Duration;

use regsync::domain::OrganizerId;

use crate::delegated::{delegated, sign_in};
use crate::helpers::{meeting, spawn_app_with, TestApp};

/// Sessions of the app's database that sit in an open transaction.
async fn idle_in_transaction(app: &TestApp) -> i64 {
    app.scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND state LIKE 'idle in transaction%'",
    )
    .await
}

#[tokio::test]
async fn a_refresh_holds_no_transaction_open_while_the_identity_platform_answers_and_replicas_share_its_token() {
    let app = spawn_app_with(delegated).await;
    app.sim.delegated_token_lifetime(3);
    sign_in(&app, "org-0").await;
    let other = app.replica();
    let organizer = OrganizerId("org-0".into());
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    app.sim.delay_tokens(Duration::from_millis(1_200));
    let refreshes_before = app.sim.stats().refreshes;

    let (a, b, open) = tokio::join!(app.ctx.permit(&organizer), other.permit(&organizer), async {
        // Both refreshes are waiting on the identity platform now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        idle_in_transaction(&app).await
    });

    assert_eq!(open, 0, "no transaction stays open across the token request");
    assert!(a.is_ok() && b.is_ok(), "both replicas have a token: {:?} {:?}", a.err(), b.err());
    let stats = app.sim.stats();
    assert_eq!(stats.refreshes - refreshes_before, 1, "one refresh; the other replica waited for its token");
    assert_eq!(stats.refresh_reuses, 0);
}

#[tokio::test]
async fn a_refresh_whose_answer_was_lost_is_tried_once_more_and_a_refusal_then_says_the_answer_was_lost() {
    let app = spawn_app_with(delegated).await;
    app.sim.delegated_token_lifetime(3);
    sign_in(&app, "org-0").await;
    let organizer = OrganizerId("org-0".into());
    tokio::time::sleep(Duration::from_millis(2_500)).await;

    app.sim.lose_next_refresh_answer();
    assert!(app.ctx.permit(&organizer).await.is_err(), "the answer was lost");
    let lost: bool = sqlx::query_scalar("SELECT refresh_unknown_since IS NOT NULL FROM sign_ins")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(lost, "the lost answer is recorded");

    // The only refresh token regsync has is the one the platform spent: the
    // simulator, like a strict identity platform, revokes the chain on reuse.
    let m = app.listed(meeting(3));
    app.tick().await;
    app.settle().await;

    assert_eq!(app.sim.stats().refresh_reuses, 1, "presented once more, not again and again");
    let status = app.status(&m.id).await;
    assert_eq!(status.state, "failed");
    let reason = status.last_error.unwrap_or_default();
    assert!(reason.contains("was lost") && reason.contains("regsync login"), "{reason}");
    let condition: String = sqlx::query_scalar("SELECT condition FROM ops.organizers WHERE organizer_id = 'org-0'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(condition, "sign_in_refused");
}
