//! Delegated sign-ins (`sign_ins`): sealed tokens per organizer. A refresh
//! runs inside [`Refresh`], a transaction holding the organizer's row lock,
//! so across every replica one refresh token is redeemed once; the others
//! wait on the lock and find the fresh access token the first one stored.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Row, Transaction};

use super::{query_error, storable, Error};

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

/// Stores a new sign-in of `organizer_id` (replacing any earlier one), and
/// makes that organizer's meetings that failed for want of it due again.
/// Returns how many meetings were made due.
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
    let due = sqlx::query(
        r#"
        UPDATE meetings SET state = 'pending', attempts = 0, next_attempt_at = now()
        WHERE (organizer_id = $1 OR lower(organizer_upn) = lower($2))
          AND state = 'failed' AND last_error_category = 'auth'
        "#,
    )
    .bind(organizer_id)
    .bind(upn)
    .execute(&mut *tx)
    .await
    .map_err(query_error("make the organizer's meetings due"))?
    .rows_affected();
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

/// A refresh in progress: the organizer's row, locked until
/// [`Refresh::store`], [`Refresh::revoke`] or drop (which rolls back).
pub struct Refresh {
    tx: Transaction<'static, Postgres>,
    /// The row as it is now, under the lock.
    pub sign_in: SignIn,
}

/// Locks `organizer_id`'s sign-in for a refresh, waiting for any other
/// replica's refresh to finish first; `None` when there is no sign-in.
///
/// # Errors
/// The statement failed.
pub async fn lock_for_refresh(pool: &PgPool, organizer_id: &str) -> Result<Option<Refresh>, Error> {
    let mut tx = pool.begin().await.map_err(query_error("lock the sign-in"))?;
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sign_ins WHERE organizer_id = $1 FOR UPDATE"))
        .bind(organizer_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(query_error("lock the sign-in"))?;
    let Some(row) = row else { return Ok(None) };
    let sign_in = sign_in(&row).map_err(query_error("lock the sign-in"))?;
    Ok(Some(Refresh { tx, sign_in }))
}

impl Refresh {
    /// Stores the tokens the refresh returned and releases the lock.
    ///
    /// # Errors
    /// The statement failed (the refresh token just redeemed is then lost:
    /// the organizer may have to sign in again).
    pub async fn store(mut self, tokens: &SealedTokens<'_>) -> Result<(), Error> {
        sqlx::query(
            r#"
            UPDATE sign_ins SET sealed_refresh_token = $2, sealed_access_token = $3, access_expires_at = $4,
                                scopes = coalesce($5, scopes), refreshed_at = now()
            WHERE organizer_id = $1
            "#,
        )
        .bind(&self.sign_in.organizer_id)
        .bind(tokens.refresh_token)
        .bind(tokens.access_token)
        .bind(tokens.access_expires_at)
        .bind(tokens.scopes.map(storable))
        .execute(&mut *self.tx)
        .await
        .map_err(query_error("store the refreshed sign-in"))?;
        self.tx.commit().await.map_err(query_error("store the refreshed sign-in"))
    }

    /// Records that the identity platform refused the refresh token, and
    /// releases the lock.
    ///
    /// # Errors
    /// The statement failed.
    pub async fn revoke(mut self, reason: &str) -> Result<(), Error> {
        sqlx::query(
            "UPDATE sign_ins SET revoked_at = now(), revoked_reason = $2, sealed_access_token = NULL \
             WHERE organizer_id = $1",
        )
        .bind(&self.sign_in.organizer_id)
        .bind(storable(reason))
        .execute(&mut *self.tx)
        .await
        .map_err(query_error("record the revoked sign-in"))?;
        self.tx.commit().await.map_err(query_error("record the revoked sign-in"))
    }
}
