//! Retention: the audit of Graph calls, rejected items, poll cycles and the
//! heartbeats of replicas gone older
//! than a configured age are deleted in small batches, so no table grows
//! without bound and no delete holds many locks for long.

use std::time::Duration;

use sqlx::PgPool;

use super::{query_error, Error};

/// Each table's pruning statement: `$1` the age in seconds, `$2` the batch.
const PRUNE: [(&str, &str); 4] = [
    (
        "prune graph calls",
        "DELETE FROM graph_calls WHERE id IN (
             SELECT id FROM graph_calls WHERE at < now() - make_interval(secs => $1) LIMIT $2)",
    ),
    (
        "prune rejected items",
        "DELETE FROM rejected_items WHERE id IN (
             SELECT id FROM rejected_items WHERE seen_at < now() - make_interval(secs => $1) LIMIT $2)",
    ),
    (
        "prune poll cycles",
        "DELETE FROM sync_runs WHERE id IN (
             SELECT id FROM sync_runs WHERE started_at < now() - make_interval(secs => $1)
               AND finished_at IS NOT NULL LIMIT $2)",
    ),
    (
        "prune replicas gone",
        "DELETE FROM replicas WHERE id IN (
             SELECT id FROM replicas WHERE last_seen_at < now() - make_interval(secs => $1) LIMIT $2)",
    ),
];

/// Deletes rows older than `max_age`, `batch` rows per statement. Returns
/// how many rows went.
///
/// # Errors
/// A statement failed; what was deleted before stays deleted.
pub async fn prune(pool: &PgPool, max_age: Duration, batch: u32) -> Result<u64, Error> {
    let mut deleted = 0;
    for (op, sql) in PRUNE {
        loop {
            let done = sqlx::query(sql)
                .bind(max_age.as_secs_f64())
                .bind(i64::from(batch))
                .execute(pool)
                .await
                .map_err(query_error(op))?
                .rows_affected();
            deleted += done;
            if done < u64::from(batch) {
                break;
            }
            // Between batches, let the engine's statements through.
            tokio::task::yield_now().await;
        }
    }
    Ok(deleted)
}
