//! What Graph resolved the platform's UPNs and join links to: remembered
//! once for every meeting that names them, and written into the claimed
//! meeting's row under its lease.

use std::time::Duration;

use sqlx::PgPool;

use super::{query_error, Claimed, Error};
use crate::domain::Lookup;

/// Whose a resolution is: a join link's, the organizer among whose meetings
/// it was resolved; a UPN's, the tenant's (empty).
fn scope(lookup: &Lookup) -> &str {
    match lookup {
        Lookup::Organizer { .. } => "",
        Lookup::Meeting { organizer, .. } => organizer.as_str(),
    }
}

/// The id `lookup` resolved to within the last `max_age`, if it did.
///
/// # Errors
/// The statement failed.
pub async fn remembered(pool: &PgPool, lookup: &Lookup, max_age: Duration) -> Result<Option<String>, Error> {
    sqlx::query_scalar(
        "SELECT graph_id FROM graph_resolutions WHERE kind = $1 AND scope = $2 AND value = $3 \
         AND resolved_at > now() - make_interval(secs => $4)",
    )
    .bind(lookup.kind())
    .bind(scope(lookup))
    .bind(lookup.value())
    .bind(max_age.as_secs_f64())
    .fetch_optional(pool)
    .await
    .map_err(query_error("read a resolution"))
}

/// Remembers that `lookup` resolved to `graph_id` and writes it into the
/// claimed meeting, in one statement. The meeting's part is fenced: it is
/// written only while the lease is ours and the platform still names the
/// meeting as it did at the claim.
///
/// Returns whether the meeting took it (false: the lease was lost or the
/// platform changed the meeting meanwhile).
///
/// # Errors
/// The statement failed.
pub async fn remember(pool: &PgPool, claimed: &Claimed, lookup: &Lookup, graph_id: &str) -> Result<bool, Error> {
    sqlx::query_scalar(
        r#"
        WITH remembered AS (
            INSERT INTO graph_resolutions (kind, value, graph_id, scope) VALUES ($1, $2, $3, $8)
            ON CONFLICT (kind, scope, value) DO UPDATE SET graph_id = EXCLUDED.graph_id, resolved_at = now()
        ),
        taken AS (
            UPDATE meetings SET
                organizer_id      = CASE WHEN $1 = 'organizer' THEN $3 ELSE organizer_id END,
                online_meeting_id = CASE WHEN $1 = 'meeting' THEN $3 ELSE online_meeting_id END
            WHERE id = $4 AND lease_token = $5
              AND organizer_upn IS NOT DISTINCT FROM $6 AND join_url IS NOT DISTINCT FROM $7
            RETURNING 1
        )
        SELECT EXISTS (SELECT 1 FROM taken)
        "#,
    )
    .bind(lookup.kind())
    .bind(lookup.value())
    .bind(graph_id)
    .bind(claimed.claim.lease.row)
    .bind(claimed.claim.lease.token)
    .bind(&claimed.organizer_upn)
    .bind(&claimed.join_url)
    .bind(scope(lookup))
    .fetch_one(pool)
    .await
    .map_err(query_error("remember a resolution"))
}

/// The statement that forgets what the meetings selected by `$which` (not
/// in flight) were resolved to: their UPNs' and join links' resolutions,
/// and the ids the rows took from them, so the next claim looks them up
/// again.
macro_rules! forget_sql {
    ($which:literal) => {
        concat!(
            r#"
        WITH chosen AS (
            SELECT id, organizer_upn, join_url, organizer_id FROM meetings
            WHERE state <> 'in_flight' AND (organizer_upn IS NOT NULL OR join_url IS NOT NULL) AND "#,
            $which,
            r#"
        ),
        forgotten AS (
            DELETE FROM graph_resolutions g USING chosen r
            WHERE (g.kind = 'organizer' AND g.value = r.organizer_upn)
               OR (g.kind = 'meeting' AND g.value = r.join_url AND g.scope = r.organizer_id)
        )
        UPDATE meetings m SET
            organizer_id      = CASE WHEN m.organizer_upn IS NOT NULL THEN NULL ELSE m.organizer_id END,
            online_meeting_id = CASE WHEN m.join_url IS NOT NULL THEN NULL ELSE m.online_meeting_id END
        FROM chosen r WHERE m.id = r.id
        "#
        )
    };
}

/// Forgets what the meetings `regsync retry` makes due (one, or every failed
/// one) were resolved to, so their UPNs and join links are looked up again.
///
/// # Errors
/// The statement failed.
pub async fn forget_for_retry(pool: &PgPool, external_id: Option<&str>) -> Result<(), Error> {
    sqlx::query(forget_sql!("CASE WHEN $1::text IS NULL THEN state = 'failed' ELSE external_id = $1 END"))
        .bind(external_id)
        .execute(pool)
        .await
        .map_err(query_error("forget resolutions for a retry"))?;
    Ok(())
}

/// Forgets what meeting `id` was resolved to after Graph answered 404 for
/// a resolved id (a UPN given to another person, a meeting created anew).
///
/// # Errors
/// The statement failed.
pub async fn forget_for_row(pool: &PgPool, id: i64) -> Result<(), Error> {
    sqlx::query(forget_sql!("id = $1"))
        .bind(id)
        .execute(pool)
        .await
        .map_err(query_error("forget a row's resolutions"))?;
    Ok(())
}
