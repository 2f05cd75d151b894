//! Graph change-notification subscriptions: which event each covers, and
//! when each expires.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{query_error, Error};

/// A subscription regsync made.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscription {
    /// The platform's meeting id.
    pub meeting_external_id: String,
    /// The webinar's or town hall's id.
    pub event_id: String,
    /// Graph's id of the subscription.
    pub subscription_id: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// Every subscription regsync holds.
///
/// # Errors
/// The statement failed.
pub async fn all(pool: &PgPool) -> Result<Vec<Subscription>, Error> {
    sqlx::query_as("SELECT meeting_external_id, event_id, subscription_id, expires_at FROM graph_subscriptions")
        .fetch_all(pool)
        .await
        .map_err(query_error("list subscriptions"))
}

/// The subscription with Graph's id `id`.
///
/// # Errors
/// The statement failed.
pub async fn by_id(pool: &PgPool, id: &str) -> Result<Option<Subscription>, Error> {
    sqlx::query_as(
        "SELECT meeting_external_id, event_id, subscription_id, expires_at FROM graph_subscriptions
         WHERE subscription_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(query_error("find a subscription"))
}

/// Records (or replaces) `meeting`'s subscription.
///
/// # Errors
/// The statement failed.
pub async fn put(pool: &PgPool, s: &Subscription) -> Result<(), Error> {
    sqlx::query(
        r#"
        INSERT INTO graph_subscriptions (meeting_external_id, event_id, subscription_id, expires_at)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (meeting_external_id) DO UPDATE SET event_id = EXCLUDED.event_id,
            subscription_id = EXCLUDED.subscription_id, expires_at = EXCLUDED.expires_at, renewed_at = now()
        "#,
    )
    .bind(&s.meeting_external_id)
    .bind(&s.event_id)
    .bind(&s.subscription_id)
    .bind(s.expires_at)
    .execute(pool)
    .await
    .map_err(query_error("record a subscription"))?;
    Ok(())
}

/// Forgets subscription `id` (removed at Graph, or no longer needed).
///
/// # Errors
/// The statement failed.
pub async fn forget(pool: &PgPool, id: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM graph_subscriptions WHERE subscription_id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(query_error("forget a subscription"))?;
    Ok(())
}

/// Marks subscription `id` due a renewal now (Graph asked to reauthorize).
///
/// # Errors
/// The statement failed.
pub async fn renew_now(pool: &PgPool, id: &str) -> Result<(), Error> {
    sqlx::query("UPDATE graph_subscriptions SET expires_at = LEAST(expires_at, now()) WHERE subscription_id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(query_error("mark a subscription for renewal"))?;
    Ok(())
}
