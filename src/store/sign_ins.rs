//! Delegated sign-ins (`sign_ins`): sealed tokens per organizer. A refresh
//! runs under a [`RefreshLease`], a column with a deadline (no transaction
//! is held open across the HTTP call), so across every replica one refresh
//! token is redeemed once; the others wait for the lease and find the fresh
//! access token the first one stored.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::{query_error, storable, Error};
use crate::domain::FailureCategory;

/// A sign-in as stored: tokens still sealed.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The organizer (the user's object id).
    pub organizer_id: String,
    /// Who signed in.
    pub upn: Option<String>,
    /// The sealed refresh token.
    pub sealed_refresh_token: Vec<u8>,
    /// The sealed access token, if one was stored.
    pub sealed_access_token: Option<Vec<u8>>,
    /// When that access token expires.
    pub access_expires_at: Option<DateTime<Utc>>,
    /// Why the sign-in no longer works, if it does not.
    pub revoked_reason: Option<String>,
}

/// Fresh sealed tokens to store.
#[derive(Debug)]
pub struct SealedTokens<'a> {
    /// The new refresh token.
    pub refresh_token: &'a [u8],
    /// The access token.
    pub access_token: &'a [u8],
    /// When it expires.
    pub access_expires_at: DateTime<Utc>,
    /// The delegated permissions granted.
    pub scopes: Option<&'a str>,
}

const COLUMNS: &str = "organizer_id, upn, sealed_refresh_token, sealed_access_token, access_expires_at, revoked_reason";

fn sign_in(row: &sqlx::postgres::PgRow) -> Result<SignIn, sqlx::Error> {
    Ok(SignIn {
        organizer_id: row.try_get("organizer_id")?,
        upn: row.try_get("upn")?,
        sealed_refresh_token: row.try_get("sealed_refresh_token")?,
        sealed_access_token: row.try_get("sealed_access_token")?,
        access_expires_at: row.try_get("access_expires_at")?,
        revoked_reason: row.try_get("revoked_reason")?,
    })
}

/// Stores a new sign-in of `organizer_id` (replacing any earlier one), ends
/// the organizer's condition and makes their rows that failed for want of
/// it due again. Returns how many rows were made due.
///
/// # Errors
/// The statement failed.
pub async fn save(
    pool: &PgPool,
    organizer_id: &str,
    upn: Option<&str>,
    tokens: &SealedTokens<'_>,
) -> Result<u64, Error> {
    let mut tx = pool.begin().await.map_err(query_error("store the sign-in"))?;
    sqlx::query(
        r#"
        INSERT INTO sign_ins (organizer_id, upn, sealed_refresh_token, sealed_access_token, access_expires_at, scopes)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (organizer_id) DO UPDATE SET
            upn = EXCLUDED.upn, sealed_refresh_token = EXCLUDED.sealed_refresh_token,
            sealed_access_token = EXCLUDED.sealed_access_token, access_expires_at = EXCLUDED.access_expires_at,
            scopes = EXCLUDED.scopes, signed_in_at = now(), refreshed_at = NULL, revoked_at = NULL,
            revoked_reason = NULL
        "#,
    )
    .bind(organizer_id)
    .bind(upn.map(storable))
    .bind(tokens.refresh_token)
    .bind(tokens.access_token)
    .bind(tokens.access_expires_at)
    .bind(tokens.scopes.map(storable))
    .execute(&mut *tx)
    .await
    .map_err(query_error("store the sign-in"))?;
    // Their rows that failed for want of it (meetings and registrants) are
    // due again, and their condition ends.
    let due = super::organizers::make_due(&mut *tx, organizer_id, upn, Some(FailureCategory::Auth)).await?;
    tx.commit().await.map_err(query_error("store the sign-in"))?;
    Ok(due)
}

/// Clears `organizer_id`'s stored access token if it is still the one that
/// expires at `expires_at` (Graph refused it with 401): the next use
/// refreshes. Compare-and-clear, so a token another replica stored since is
/// kept. Whether one was cleared.
///
/// # Errors
/// The statement failed.
pub async fn clear_access_token(pool: &PgPool, organizer_id: &str, expires_at: DateTime<Utc>) -> Result<bool, Error> {
    let cleared = sqlx::query(
        "UPDATE sign_ins SET sealed_access_token = NULL, access_expires_at = NULL \
         WHERE organizer_id = $1 AND access_expires_at = $2",
    )
    .bind(organizer_id)
    .bind(expires_at)
    .execute(pool)
    .await
    .map_err(query_error("clear a refused access token"))?;
    Ok(cleared.rows_affected() == 1)
}

/// Removes the sign-in of `organizer_id`; whether there was one.
///
/// # Errors
/// The statement failed.
pub async fn remove(pool: &PgPool, organizer_id: &str) -> Result<bool, Error> {
    let removed = sqlx::query("DELETE FROM sign_ins WHERE organizer_id = $1")
        .bind(organizer_id)
        .execute(pool)
        .await
        .map_err(query_error("remove the sign-in"))?;
    Ok(removed.rows_affected() == 1)
}

/// The sign-in of `organizer_id`, read without a lock.
///
/// # Errors
/// The statement failed.
pub async fn get(pool: &PgPool, organizer_id: &str) -> Result<Option<SignIn>, Error> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM sign_ins WHERE organizer_id = $1"))
        .bind(organizer_id)
        .fetch_optional(pool)
        .await
        .map_err(query_error("read the sign-in"))?
        .map(|row| sign_in(&row))
        .transpose()
        .map_err(query_error("read the sign-in"))
}

/// The organizer who signed in as `upn` (case-insensitive).
///
/// # Errors
/// The statement failed.
pub async fn organizer_by_upn(pool: &PgPool, upn: &str) -> Result<Option<String>, Error> {
    sqlx::query_scalar(
        "SELECT organizer_id FROM sign_ins WHERE lower(upn) = lower($1) ORDER BY signed_in_at DESC LIMIT 1",
    )
    .bind(upn)
    .fetch_optional(pool)
    .await
    .map_err(query_error("find the signed-in organizer"))
}

/// Every sign-in, for `regsync status` and `doctor`.
///
/// # Errors
/// The statement failed.
pub async fn list(pool: &PgPool) -> Result<Vec<SignIn>, Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM sign_ins ORDER BY organizer_id"))
        .fetch_all(pool)
        .await
        .map_err(query_error("list sign-ins"))?;
    rows.iter().map(sign_in).collect::<Result<_, _>>().map_err(query_error("list sign-ins"))
}

/// The organizers whose sign-in is stored and usable (not signed out, not
/// revoked).
///
/// # Errors
/// The statement failed.
pub async fn usable_organizers(pool: &PgPool) -> Result<Vec<String>, Error> {
    sqlx::query_scalar("SELECT organizer_id FROM sign_ins WHERE revoked_at IS NULL")
        .fetch_all(pool)
        .await
        .map_err(query_error("list usable sign-ins"))
}

/// A refresh this process may make: the organizer's row leased to
/// `holder` until a deadline, with no transaction held while the identity
/// platform answers.
#[derive(Debug)]
pub struct RefreshLease {
    /// The row as it was when leased.
    pub sign_in: SignIn,
    /// When an earlier refresh's answer was lost, if one was (the identity
    /// platform may have spent the refresh token then).
    pub unknown_since: Option<DateTime<Utc>>,
    holder: uuid::Uuid,
}

/// The answer to a request for the refresh lease.
#[derive(Debug)]
pub enum Leased {
    /// Ours until the deadline.
    Ours(RefreshLease),
    /// Another process holds it: wait for the token it stores.
    Busy,
    /// No sign-in is stored.
    Missing,
}

/// Leases `organizer_id`'s refresh to `holder` for `ttl`, unless another
/// holder's lease is still running.
///
/// # Errors
/// The statement failed.
pub async fn lease_refresh(
    pool: &PgPool,
    organizer_id: &str,
    holder: uuid::Uuid,
    ttl: std::time::Duration,
) -> Result<Leased, Error> {
    let row = sqlx::query(&format!(
        "UPDATE sign_ins SET refresh_holder = $2, refresh_lease_until = now() + make_interval(secs => $3) \
         WHERE organizer_id = $1 AND (refresh_lease_until IS NULL OR refresh_lease_until < now()) \
         RETURNING {COLUMNS}, refresh_unknown_since"
    ))
    .bind(organizer_id)
    .bind(holder)
    .bind(ttl.as_secs_f64())
    .fetch_optional(pool)
    .await
    .map_err(query_error("lease the sign-in's refresh"))?;
    let Some(row) = row else {
        return Ok(if get(pool, organizer_id).await?.is_some() { Leased::Busy } else { Leased::Missing });
    };
    let sign_in = sign_in(&row).map_err(query_error("lease the sign-in's refresh"))?;
    let unknown_since = row.try_get("refresh_unknown_since").map_err(query_error("lease the sign-in's refresh"))?;
    Ok(Leased::Ours(RefreshLease { sign_in, unknown_since, holder }))
}

impl RefreshLease {
    /// Stores the tokens the refresh returned and ends the lease. Whether
    /// they were stored: `false` when another holder took the lease over
    /// (this process paused past it).
    ///
    /// # Errors
    /// The statement failed (the refresh token just redeemed is then held
    /// only in memory).
    pub async fn store(&self, pool: &PgPool, tokens: &SealedTokens<'_>) -> Result<bool, Error> {
        let stored = sqlx::query(
            r#"
            UPDATE sign_ins SET sealed_refresh_token = $3, sealed_access_token = $4, access_expires_at = $5,
                                scopes = coalesce($6, scopes), refreshed_at = now(),
                                refresh_holder = NULL, refresh_lease_until = NULL, refresh_unknown_since = NULL
            WHERE organizer_id = $1 AND refresh_holder = $2
            "#,
        )
        .bind(&self.sign_in.organizer_id)
        .bind(self.holder)
        .bind(tokens.refresh_token)
        .bind(tokens.access_token)
        .bind(tokens.access_expires_at)
        .bind(tokens.scopes.map(storable))
        .execute(pool)
        .await
        .map_err(query_error("store the refreshed sign-in"))?;
        Ok(stored.rows_affected() == 1)
    }

    /// Records that the identity platform refused the refresh token, and
    /// ends the lease.
    ///
    /// # Errors
    /// The statement failed.
    pub async fn revoke(&self, pool: &PgPool, reason: &str) -> Result<(), Error> {
        sqlx::query(
            "UPDATE sign_ins SET revoked_at = now(), revoked_reason = $3, sealed_access_token = NULL, \
             refresh_holder = NULL, refresh_lease_until = NULL WHERE organizer_id = $1 AND refresh_holder = $2",
        )
        .bind(&self.sign_in.organizer_id)
        .bind(self.holder)
        .bind(storable(reason))
        .execute(pool)
        .await
        .map_err(query_error("record the revoked sign-in"))?;
        Ok(())
    }

    /// Ends the lease without new tokens; `answer_lost`: the refresh may
    /// have been redeemed without its answer arriving.
    ///
    /// # Errors
    /// The statement failed.
    pub async fn release(&self, pool: &PgPool, answer_lost: bool) -> Result<(), Error> {
        sqlx::query(
            "UPDATE sign_ins SET refresh_holder = NULL, refresh_lease_until = NULL, refresh_unknown_since = \
             CASE WHEN $3 THEN coalesce(refresh_unknown_since, now()) ELSE refresh_unknown_since END \
             WHERE organizer_id = $1 AND refresh_holder = $2",
        )
        .bind(&self.sign_in.organizer_id)
        .bind(self.holder)
        .bind(answer_lost)
        .execute(pool)
        .await
        .map_err(query_error("release the sign-in's refresh"))?;
        Ok(())
    }
}
