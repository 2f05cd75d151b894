//! What Graph resolved the platform's UPNs and join links to: remembered
//! once for every meeting that names them, and written into the claimed
//! meeting's row under its lease.

use sqlx::PgPool;

use super::{query_error, Claimed, Error};
use crate::domain::Lookup;

/// The id `lookup` resolved to before, if it did.
///
/// # Errors
/// The statement failed.
pub async fn remembered(pool: &PgPool, lookup: &Lookup) -> Result<Option<String>, Error> {
    sqlx::query_scalar("SELECT graph_id FROM graph_resolutions WHERE kind = $1 AND value = $2")
        .bind(lookup.kind())
        .bind(lookup.value())
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
            INSERT INTO graph_resolutions (kind, value, graph_id) VALUES ($1, $2, $3)
            ON CONFLICT (kind, value) DO UPDATE SET graph_id = EXCLUDED.graph_id, resolved_at = now()
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
    .bind(claimed.id)
    .bind(claimed.lease_token)
    .bind(&claimed.organizer_upn)
    .bind(&claimed.join_url)
    .fetch_one(pool)
    .await
    .map_err(query_error("remember a resolution"))
}
