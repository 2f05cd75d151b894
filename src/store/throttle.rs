//! The deployment-wide Graph throttle: one row (`graph_throttle`) every
//! replica reads before it claims or sends. `sync::throttle` explains the
//! protocol; this file holds all of its SQL. The claim and the pre-send
//! statement (`claims`) embed the two fragments below, so that checking the
//! hold costs no extra round trip.

use std::time::Duration;

use sqlx::PgPool;

use super::{query_error, Error};

/// SQL fragments for the statements in `claims`, as literals for `concat!`.
///
/// - `held`: a CTE `held` with a row while nothing may be claimed: a hold,
///   or the probe after one still out.
/// - `gate, "<condition>"`: CTEs `probe` (a row if this sender takes the
///   probe: the first after a hold, for `p.probe_ttl_secs` seconds, from a
///   CTE `p` the statement defines first, and only if the SQL condition
///   says its request will go: a sender the gate then refuses must not
///   hold the probe) and `t` (`wait`: how long this sender must still wait;
///   zero when it may send).
macro_rules! throttle_sql {
    (held) => {
        "held AS (
            SELECT 1 FROM graph_throttle WHERE throttled_until > now() OR (recovering AND probe_until > now())
        )"
    };
    (gate, $will_send:literal) => {
        concat!(
            "probe AS (
            -- The first sender after a hold becomes the probe.
            UPDATE graph_throttle SET probe_until = now() + make_interval(secs => (SELECT probe_ttl_secs FROM p))
            WHERE recovering AND throttled_until <= now() AND (probe_until IS NULL OR probe_until <= now())
              AND (",
            $will_send,
            ")
            RETURNING 1
        ),
        t AS (
            SELECT CASE
                WHEN throttled_until > now() THEN throttled_until - now()
                WHEN recovering AND NOT EXISTS (SELECT 1 FROM probe)
                    THEN GREATEST(coalesce(probe_until, now()) - now(), interval '100 milliseconds')
                ELSE interval '0'
            END AS wait
            FROM graph_throttle
        )"
        )
    };
}
pub(super) use throttle_sql;

/// Holds every replica's Graph requests for `wait` (never shortens a longer
/// hold) and starts the recovery: the first request after it is the probe.
/// Returns how long the deployment is now held.
///
/// # Errors
/// The statement failed.
pub async fn hold(pool: &PgPool, wait: Duration) -> Result<Duration, Error> {
    let secs: f64 = sqlx::query_scalar(
        r#"
        UPDATE graph_throttle SET throttled_until = GREATEST(throttled_until, now() + make_interval(secs => $1)),
                                  recovering = TRUE, probe_until = NULL
        RETURNING EXTRACT(EPOCH FROM (throttled_until - now()))::float8
        "#,
    )
    .bind(wait.as_secs_f64())
    .fetch_one(pool)
    .await
    .map_err(query_error("record Graph throttling"))?;
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

/// Suspends Graph writes for the whole deployment: the registration API
/// refuses every call (`reason`). Held like a throttle for `probe_after`;
/// then one request probes, and only an answer that is neither a throttle
/// nor the same refusal ends it ([`end_recovery`]). Keeps the first
/// `suspended_since` while the condition lasts. Returns the hold.
///
/// # Errors
/// The statement failed.
pub async fn suspend(pool: &PgPool, reason: &str, probe_after: Duration) -> Result<Duration, Error> {
    let secs: f64 = sqlx::query_scalar(
        r#"
        UPDATE graph_throttle SET throttled_until = GREATEST(throttled_until, now() + make_interval(secs => $1)),
                                  recovering = TRUE, probe_until = NULL,
                                  suspended_since = coalesce(suspended_since, now()), suspended_reason = $2
        RETURNING EXTRACT(EPOCH FROM (throttled_until - now()))::float8
        "#,
    )
    .bind(probe_after.as_secs_f64())
    .bind(super::storable(reason))
    .fetch_one(pool)
    .await
    .map_err(query_error("suspend Graph writes"))?;
    Ok(Duration::from_secs_f64(secs.max(0.0)))
}

/// Why Graph writes are suspended for the deployment, if they are.
///
/// # Errors
/// The statement failed.
pub async fn suspension(pool: &PgPool) -> Result<Option<String>, Error> {
    sqlx::query_scalar("SELECT suspended_reason FROM graph_throttle")
        .fetch_one(pool)
        .await
        .map_err(query_error("read the Graph suspension"))
}

/// Ends the recovery after a hold: the probe got an answer that was not a
/// throttle (nor the refusal that suspended writes), so every replica may
/// send at full speed again. A suspension ends only on an answer of the
/// registration API itself (`ends_suspension`): another call's answer says
/// nothing about it.
///
/// # Errors
/// The statement failed.
pub async fn end_recovery(pool: &PgPool, ends_suspension: bool) -> Result<(), Error> {
    sqlx::query(
        "UPDATE graph_throttle SET recovering = FALSE, probe_until = NULL, suspended_reason = NULL, \
         suspended_since = NULL WHERE recovering AND ($1 OR suspended_reason IS NULL)",
    )
    .bind(ends_suspension)
    .execute(pool)
    .await
    .map_err(query_error("end throttle recovery"))?;
    Ok(())
}

/// The deployment's budget of virtual-event writes: takes one of `limit`
/// places in the `window` (counted from a write's sending until `window`
/// after its answer; `timeout` bounds a write never answered) and returns
/// its id, or how long until a place may free. Serialized by an advisory
/// lock, so replicas never take more than `limit` together.
///
/// # Errors
/// The statement failed.
pub async fn take_write_place(
    pool: &PgPool,
    limit: u32,
    window: Duration,
    timeout: Duration,
) -> Result<Result<i64, Duration>, Error> {
    let mut tx = pool.begin().await.map_err(query_error("take a write place"))?;
    // Its own statement: the count below must see every write committed
    // before the lock was ours (a statement's snapshot is taken at its start).
    sqlx::query("SELECT pg_advisory_xact_lock(7348001)")
        .execute(&mut *tx)
        .await
        .map_err(query_error("take a write place"))?;
    let (taken, wait): (Option<i64>, Option<f64>) = sqlx::query_as(
        r#"
        WITH forgotten AS (
            DELETE FROM virtual_event_writes
            WHERE coalesce(answered_at, sent_at + make_interval(secs => $3)) < now() - make_interval(secs => $2)
        ),
        counting AS (
            SELECT coalesce(answered_at, sent_at + make_interval(secs => $3)) + make_interval(secs => $2) AS frees_at
            FROM virtual_event_writes
            WHERE coalesce(answered_at, sent_at + make_interval(secs => $3)) >= now() - make_interval(secs => $2)
        ),
        taken AS (
            INSERT INTO virtual_event_writes (sent_at)
            SELECT now() WHERE (SELECT count(*) FROM counting) < $1
            RETURNING id
        )
        SELECT (SELECT id FROM taken),
               (SELECT EXTRACT(EPOCH FROM min(frees_at) - now())::float8 FROM counting)
        "#,
    )
    .bind(i64::from(limit))
    .bind(window.as_secs_f64())
    .bind(timeout.as_secs_f64())
    .fetch_one(&mut *tx)
    .await
    .map_err(query_error("take a write place"))?;
    tx.commit().await.map_err(query_error("take a write place"))?;
    Ok(match taken {
        Some(id) => Ok(id),
        None => Err(Duration::from_secs_f64(wait.unwrap_or(0.0).clamp(0.05, (window + timeout).as_secs_f64()))),
    })
}

/// Records that write place `id` was answered: it frees a window later.
///
/// # Errors
/// The statement failed.
pub async fn write_answered(pool: &PgPool, id: i64) -> Result<(), Error> {
    sqlx::query("UPDATE virtual_event_writes SET answered_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(query_error("record a write's answer"))?;
    Ok(())
}
