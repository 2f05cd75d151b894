//! Pushed changes: the webhook deliveries the deployment accepted (a replay
//! is refused by any replica), and the wake-up every replica's workers
//! listen for (`LISTEN regsync_due`).

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{query_error, Error};

/// The channel a change that made rows due is announced on.
pub const DUE_CHANNEL: &str = "regsync_due";

/// Records a delivery by its signature. False when the deployment has seen
/// it: a replay. Deliveries older than a day go in the same statement (a
/// signature that old is refused as stale before it gets here).
///
/// # Errors
/// The statement failed.
pub async fn record_delivery(pool: &PgPool, signature: &str, signed_at: DateTime<Utc>) -> Result<bool, Error> {
    let inserted: Option<i32> = sqlx::query_scalar(
        r#"
        WITH gone AS (DELETE FROM hook_deliveries WHERE received_at < now() - interval '1 day')
        INSERT INTO hook_deliveries (signature, signed_at) VALUES ($1, $2)
        ON CONFLICT (signature) DO NOTHING
        RETURNING 1
        "#,
    )
    .bind(signature)
    .bind(signed_at)
    .fetch_optional(pool)
    .await
    .map_err(query_error("record a webhook delivery"))?;
    Ok(inserted.is_some())
}

/// Forgets a delivery that could not be carried out, so the platform's
/// retry of it is not refused as a replay.
///
/// # Errors
/// The statement failed.
pub async fn forget_delivery(pool: &PgPool, signature: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM hook_deliveries WHERE signature = $1")
        .bind(signature)
        .execute(pool)
        .await
        .map_err(query_error("forget a webhook delivery"))?;
    Ok(())
}

/// Wakes every replica's workers: rows became due now.
///
/// # Errors
/// The statement failed.
pub async fn notify_due(pool: &PgPool) -> Result<(), Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(DUE_CHANNEL)
        .execute(pool)
        .await
        .map_err(query_error("announce due rows"))?;
    Ok(())
}

/// The database's clock: pushed items are stamped with it, as listings are,
/// so an older listing never overwrites a newer push.
///
/// # Errors
/// The statement failed.
pub async fn now(pool: &PgPool) -> Result<DateTime<Utc>, Error> {
    sqlx::query_scalar("SELECT now()").fetch_one(pool).await.map_err(query_error("read the database clock"))
}

/// Waits for `regsync_due` on a connection of its own.
pub struct DueListener {
    pool: PgPool,
    listener: Option<sqlx::postgres::PgListener>,
}

impl DueListener {
    /// Listens through `pool`'s settings; connects at the first wait.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, listener: None }
    }

    /// Listens now if the database answers (else at the first wait), so
    /// that no announcement made meanwhile is missed.
    pub async fn start(&mut self) {
        if self.listener.is_none() {
            self.listener = listen(&self.pool).await.ok();
        }
    }

    /// Returns when rows became due somewhere in the deployment, or when
    /// the connection was lost (a wake-up may have been missed). While the
    /// database is away it tries again every `retry`; the caller's own
    /// interval covers that time. Cancel-safe: no wake-up is lost to a
    /// `select!` that picks another branch.
    pub async fn wait(&mut self, retry: std::time::Duration) {
        loop {
            let listener = match self.listener.as_mut() {
                Some(listener) => listener,
                None => match listen(&self.pool).await {
                    Ok(listener) => self.listener.insert(listener),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot listen for due rows yet");
                        tokio::time::sleep(retry).await;
                        continue;
                    }
                },
            };
            match listener.try_recv().await {
                // Many changes wake once.
                Ok(Some(_)) => while listener.next_buffered().is_some() {},
                // Lost: it reconnects at the next wait.
                Ok(None) => {}
                Err(_) => self.listener = None,
            }
            return;
        }
    }
}

async fn listen(pool: &PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.listen(DUE_CHANNEL).await?;
    Ok(listener)
}
