//! The meetings table as the platform fills it: bulk ingest, the
//! missing-meeting policy, operator retries, and the counts and failure
//! list operators read. What workers do to a row is in `claims`, `send`
//! and `outcome`.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Row};

use super::{due_unless_in_flight, query_error, Error};
use crate::domain::{ExternalMeeting, OnlineMeetingId, OrganizerId};

/// Count of meetings in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    /// The state.
    pub state: crate::domain::RowState,
    /// How many meetings are in it.
    pub count: i64,
}

/// What [`upsert_page`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upserted {
    /// Meetings inserted or changed.
    pub changed: u64,
    /// Active meetings not stored because another active meeting already
    /// maps to the same Teams meeting: (the item's id, that meeting's id).
    pub shared: Vec<(String, String)>,
    /// Changed items not stored because this listing stored their id from
    /// an earlier page.
    pub repeated: Vec<String>,
}

/// Whether the stored meeting `m` holds the platform data of the page row
/// `p`: an id the platform gives is compared, one regsync resolved is not
/// (the UPN or join link it came from is).
macro_rules! same_platform_data {
    ($m:literal, $p:literal) => {
        concat!(
            "((",
            $m,
            ".organizer_upn, ",
            $m,
            ".join_url, ",
            $m,
            ".allowed_registrant, ",
            $m,
            ".desired, ",
            $m,
            ".starts_at, ",
            $m,
            ".ends_at) ",
            "IS NOT DISTINCT FROM (",
            $p,
            ".organizer_upn, ",
            $p,
            ".join_url, ",
            $p,
            ".allowed_registrant, ",
            $p,
            ".desired, ",
            $p,
            ".starts_at, ",
            $p,
            ".ends_at) ",
            "AND (",
            $p,
            ".organizer_upn IS NOT NULL OR ",
            $m,
            ".organizer_id IS NOT DISTINCT FROM ",
            $p,
            ".organizer_id) ",
            "AND (",
            $p,
            ".join_url IS NOT NULL OR ",
            $m,
            ".online_meeting_id IS NOT DISTINCT FROM ",
            $p,
            ".online_meeting_id))"
        )
    };
}

/// [`upsert_page`]: `$1`..`$8`, `$10` and `$11` are the page's columns, in
/// item order; `$9` when the listing began.
const UPSERT_PAGE: &str = concat!(
    r#"
    WITH page AS (
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                             $8::timestamptz[], $10::timestamptz[], $11::timestamptz[])
            WITH ORDINALITY
            AS p(external_id, organizer_id, organizer_upn, online_meeting_id, join_url, allowed_registrant, desired,
                 source_updated_at, starts_at, ends_at, ord)
    ),
    -- A plain read finds the unchanged rows, so they cost neither an
    -- insert attempt nor a row lock. OFFSET 0 keeps the check a lookup
    -- by key per row: as a join the planner picks a scan of the whole
    -- table for a large page, and a poll becomes quadratic.
    changed AS (
        SELECT p.* FROM page p
        WHERE NOT EXISTS (
            SELECT FROM meetings m WHERE m.external_id = p.external_id AND "#,
    same_platform_data!("m", "p"),
    r#"
            OFFSET 0
        )
    ),
    -- A changed item whose row this same listing wrote already: its id
    -- appeared on an earlier page, whose occurrence stands.
    repeated AS (
        SELECT c.external_id FROM changed c
        WHERE EXISTS (SELECT FROM meetings m WHERE m.external_id = c.external_id AND m.listed_at = $9 OFFSET 0)
    ),
    -- A changed active meeting whose Teams meeting another active
    -- meeting has: one stored before, or an earlier changed item of this
    -- page (an unchanged one is stored already). Only changed rows are
    -- checked, so a steady poll pays nothing for it. Meetings named by UPN
    -- or join link are compared by those here; once resolved, the send
    -- gate finds any sharing.
    firsts AS (
        SELECT c.*, first_value(c.external_id) OVER (
                   PARTITION BY coalesce(c.organizer_id, 'upn:' || c.organizer_upn),
                                coalesce(c.online_meeting_id, 'url:' || c.join_url)
                   ORDER BY c.ord) AS first_in_page
        FROM changed c WHERE c.desired = 'registered' AND c.external_id NOT IN (SELECT external_id FROM repeated)
    ),
    shared AS (
        SELECT f.external_id, coalesce(nullif(f.first_in_page, f.external_id), holder.external_id) AS holder
        FROM firsts f
        LEFT JOIN LATERAL (
            SELECT m.external_id FROM meetings m
            WHERE m.organizer_id = f.organizer_id AND m.online_meeting_id = f.online_meeting_id
              AND m.desired = 'registered' AND m.external_id <> f.external_id
            LIMIT 1
        ) holder ON true
        WHERE f.first_in_page <> f.external_id OR holder.external_id IS NOT NULL
    ),
    upserted AS (
        -- Rows locked in one order: concurrent pollers of overlapping
        -- pages never deadlock.
        -- A meeting first met cancelled is looked up once (graph_checked),
        -- unless its Teams meeting belongs to another active meeting.
        INSERT INTO meetings AS m (external_id, organizer_id, organizer_upn, online_meeting_id, join_url,
                                   allowed_registrant, desired, source_updated_at, starts_at, ends_at, listed_at,
                                   graph_checked)
        SELECT c.external_id, c.organizer_id, c.organizer_upn, c.online_meeting_id, c.join_url,
               c.allowed_registrant, c.desired, c.source_updated_at, c.starts_at, c.ends_at, $9, c.desired = 'unregistered' AND EXISTS (
                   SELECT FROM meetings o
                   WHERE o.organizer_id = c.organizer_id AND o.online_meeting_id = c.online_meeting_id
                     AND o.desired = 'registered' AND o.external_id <> c.external_id)
        FROM changed c
        WHERE c.external_id NOT IN (SELECT external_id FROM shared UNION ALL SELECT external_id FROM repeated)
        ORDER BY c.external_id
        ON CONFLICT (external_id) DO UPDATE SET
            -- What regsync resolved stays while what it came from does.
            organizer_id       = CASE WHEN EXCLUDED.organizer_upn IS NULL THEN EXCLUDED.organizer_id
                                      WHEN EXCLUDED.organizer_upn = m.organizer_upn THEN m.organizer_id END,
            organizer_upn      = EXCLUDED.organizer_upn,
            online_meeting_id  = CASE WHEN EXCLUDED.join_url IS NULL THEN EXCLUDED.online_meeting_id
                                      WHEN EXCLUDED.join_url = m.join_url THEN m.online_meeting_id END,
            join_url           = EXCLUDED.join_url,
            allowed_registrant = EXCLUDED.allowed_registrant,
            desired            = EXCLUDED.desired,
            source_updated_at  = EXCLUDED.source_updated_at,
            starts_at          = EXCLUDED.starts_at,
            ends_at            = EXCLUDED.ends_at,
            listed_at          = EXCLUDED.listed_at,
            updated_at         = now(),
            "#,
    due_unless_in_flight!("m"),
    r#"
        -- A listing older than the one that wrote the row is not applied.
        WHERE (m.listed_at IS NULL OR m.listed_at <= EXCLUDED.listed_at) AND NOT "#,
    same_platform_data!("m", "EXCLUDED"),
    r#"
        RETURNING m.external_id, m.registration_id
    ),
    -- A changed meeting that holds no registration at Graph (a webinar, or
    -- one not registered yet) wakes its registrants here: they may have to
    -- move or be cancelled. One that holds a registration wakes them when
    -- its outcome changes that registration.
    "#,
    super::registrants::wake_registrants!("SELECT external_id FROM upserted WHERE registration_id IS NULL"),
    r#",
    -- Rows became due: every replica's workers are woken at commit
    -- (LISTEN regsync_due), in the same round trip.
    notified AS (SELECT pg_notify('regsync_due', '') FROM (SELECT FROM upserted LIMIT 1) due)
    SELECT (SELECT count(*) FROM upserted) AS changed, (SELECT count(*) FROM notified) AS notified,
           coalesce((SELECT array_agg(external_id) FROM shared), '{}') AS shared_ids,
           coalesce((SELECT array_agg(holder) FROM shared), '{}') AS holders,
           coalesce((SELECT array_agg(external_id) FROM repeated), '{}') AS repeated_ids
    "#
);

/// Model step \[S10\] (model/exactly_once.pml).
///
/// Upserts one page of meetings in one statement. A meeting whose desired
/// fields did not change is not written at all; a changed one becomes due
/// (unless a worker holds it: its outcome write notices the change). A
/// changed active meeting whose Teams meeting another active meeting already
/// has is not stored (one registration cannot belong to two meetings).
///
/// # Errors
/// The statement failed.
pub async fn upsert_page(
    pool: &PgPool,
    meetings: &[ExternalMeeting],
    listed_at: DateTime<Utc>,
) -> Result<Upserted, Error> {
    if meetings.is_empty() {
        return Ok(Upserted::default());
    }
    let c = PageColumns::of(meetings);
    let updated: Vec<_> = meetings.iter().map(|m| m.updated_at).collect();
    let starts: Vec<_> = meetings.iter().map(|m| m.times.starts_at).collect();
    let ends: Vec<_> = meetings.iter().map(|m| m.times.ends_at).collect();
    let row = sqlx::query(UPSERT_PAGE)
        .bind(&c.ids)
        .bind(&c.organizer_ids)
        .bind(&c.organizer_upns)
        .bind(&c.online_meeting_ids)
        .bind(&c.join_urls)
        .bind(&c.audiences)
        .bind(&c.desired)
        .bind(&updated)
        .bind(listed_at)
        .bind(&starts)
        .bind(&ends)
        .fetch_one(pool)
        .await
        .map_err(query_error("upsert meetings"))?;
    let read = |e| query_error("upsert meetings")(e);
    let changed: i64 = row.try_get("changed").map_err(read)?;
    let shared_ids: Vec<String> = row.try_get("shared_ids").map_err(read)?;
    let holders: Vec<String> = row.try_get("holders").map_err(read)?;
    let repeated: Vec<String> = row.try_get("repeated_ids").map_err(read)?;
    Ok(Upserted { changed: changed.unsigned_abs(), shared: shared_ids.into_iter().zip(holders).collect(), repeated })
}

/// A page's text columns, as the `UNNEST` of a page takes them.
pub(super) struct PageColumns<'a> {
    pub(super) ids: Vec<&'a str>,
    pub(super) organizer_ids: Vec<Option<&'a str>>,
    pub(super) organizer_upns: Vec<Option<&'a str>>,
    pub(super) online_meeting_ids: Vec<Option<&'a str>>,
    pub(super) join_urls: Vec<Option<&'a str>>,
    pub(super) audiences: Vec<&'a str>,
    pub(super) desired: Vec<&'a str>,
}

impl<'a> PageColumns<'a> {
    pub(super) fn of(meetings: &'a [ExternalMeeting]) -> Self {
        Self {
            ids: meetings.iter().map(|m| m.external_id.as_str()).collect(),
            organizer_ids: meetings.iter().map(|m| m.organizer.id()).collect(),
            organizer_upns: meetings.iter().map(|m| m.organizer.upn()).collect(),
            online_meeting_ids: meetings.iter().map(|m| m.online_meeting.id()).collect(),
            join_urls: meetings.iter().map(|m| m.online_meeting.join_url()).collect(),
            audiences: meetings.iter().map(|m| m.allowed_registrant.as_str()).collect(),
            desired: meetings.iter().map(|m| m.desired.as_str()).collect(),
        }
    }
}

/// Model step \[S12\] (model/exactly_once.pml).
///
/// `regsync retry`: makes one meeting (`external_id`), or every failed one,
/// `pending` and due now with its attempts reset. A meeting in flight is
/// left to its worker. An unknown outcome stays unknown: its lookup still
/// waits for `lookup_not_before`.
///
/// # Errors
/// The statement failed.
pub async fn retry(pool: &PgPool, external_id: Option<&str>) -> Result<u64, Error> {
    let result = sqlx::query(
        r#"
        UPDATE meetings SET state = 'pending', attempts = 0, next_attempt_at = now(), updated_at = now()
        WHERE state <> 'in_flight'
          AND CASE WHEN $1::text IS NULL THEN state = 'failed' ELSE external_id = $1 END
        "#,
    )
    .bind(external_id)
    .execute(pool)
    .await
    .map_err(query_error("retry meetings"))?;
    Ok(result.rows_affected())
}

/// Meetings per state, every state listed.
///
/// # Errors
/// The statement failed.
pub async fn count_by_state(pool: &PgPool) -> Result<Vec<StateCount>, Error> {
    let rows = sqlx::query(
        r#"
        SELECT s.state, count(m.id) AS count
        FROM unnest(ARRAY['pending', 'in_flight', 'retrying', 'synced', 'failed']) WITH ORDINALITY AS s(state, ord)
        LEFT JOIN meetings m ON m.state = s.state
        GROUP BY s.state, s.ord ORDER BY s.ord
        "#,
    )
    .fetch_all(pool)
    .await
    .map_err(query_error("count meetings"))?;
    rows.iter()
        .map(|r| Ok(StateCount { state: super::row_state(r.try_get("state")?)?, count: r.try_get("count")? }))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_error("count meetings"))
}

/// A failed meeting for `regsync status`.
#[derive(Debug, Clone)]
pub struct FailedMeeting {
    /// The platform's id.
    pub external_id: String,
    /// What went wrong and what to do.
    pub last_error: Option<String>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The most recent failed meetings.
///
/// # Errors
/// The statement failed.
pub async fn recent_failures(pool: &PgPool, limit: i64) -> Result<Vec<FailedMeeting>, Error> {
    let rows = sqlx::query(
        "SELECT external_id, last_error, updated_at FROM meetings WHERE state = 'failed' ORDER BY updated_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(query_error("list failures"))?;
    rows.iter()
        .map(|r| {
            Ok(FailedMeeting {
                external_id: r.try_get("external_id")?,
                last_error: r.try_get("last_error")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(query_error("list failures"))
}

/// An organizer the platform named, for `regsync doctor`: the first by id.
///
/// # Errors
/// The statement failed.
pub async fn sample_organizer(pool: &PgPool) -> Result<Option<OrganizerId>, Error> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT min(organizer_id) FROM meetings WHERE organizer_id IS NOT NULL AND organizer_id <> ''",
    )
    .fetch_one(pool)
    .await
    .map_err(query_error("find a sample organizer"))?;
    Ok(id.map(OrganizerId))
}

/// One of `organizer`'s online meetings, for `regsync doctor`.
///
/// # Errors
/// The statement failed.
pub async fn sample_meeting(pool: &PgPool, organizer: &OrganizerId) -> Result<Option<OnlineMeetingId>, Error> {
    let id: Option<String> = sqlx::query_scalar(
        "SELECT min(online_meeting_id) FROM meetings WHERE organizer_id = $1 AND online_meeting_id <> ''",
    )
    .bind(organizer.as_str())
    .fetch_one(pool)
    .await
    .map_err(query_error("find a sample meeting"))?;
    Ok(id.map(OnlineMeetingId))
}
