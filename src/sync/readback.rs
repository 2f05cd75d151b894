//! Changes made in Teams flow back: on `registrants.status_readback_secs`,
//! one replica lists the registrations of every event regsync registered
//! people for, and records each registration's status in Teams; a status
//! the platform was not told makes its registrant due, and the engine
//! writes it back (`writeback.status_*`). Reads are paced below Graph's
//! 750 GETs per 30 s per app for virtual events.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};

use super::{Ctx, SyncError};
use crate::domain::{OrganizerId, VirtualEvent};
use crate::store::{self, readback::SeenStatus};

/// Lists read per second: two thirds of Graph's 25 GETs a second, leaving
/// the rest to lookups and the engine's reads.
const LISTS_PER_SECOND: u32 = 16;

/// How long after an event ends its registrations still matter.
pub(super) const AFTER_END: Duration = Duration::from_secs(86_400);

/// What one read-back saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadBack {
    /// Events whose registrations were listed.
    pub events: u64,
    /// Registrations whose status in Teams changed.
    pub changed: u64,
    /// Events that could not be read (logged; read at the next run).
    pub failed: u64,
}

/// Runs the read-back when the deployment's period has come (one replica
/// per period).
///
/// # Errors
/// The database failed.
pub async fn when_due(ctx: &Arc<Ctx>) -> Result<Option<ReadBack>, SyncError> {
    let every = ctx.settings.registrants.status_readback_secs;
    if every == 0 || ctx.settings.graph.target.event_kind().is_none() {
        return Ok(None);
    }
    if !store::runs::claim_job(&ctx.pool, "status_readback", Duration::from_secs(every)).await? {
        return Ok(None);
    }
    read_back(ctx).await.map(Some)
}

/// Reads every event's registration statuses once — but for events a live
/// change-notification subscription covers, whose changes are announced.
///
/// # Errors
/// The database failed.
pub async fn read_back(ctx: &Arc<Ctx>) -> Result<ReadBack, SyncError> {
    let mut report = ReadBack::default();
    let Some(kind) = ctx.settings.graph.target.event_kind() else { return Ok(report) };
    let subscribed: HashSet<String> = if ctx.settings.notifications.enabled() {
        let now = chrono::Utc::now();
        let live = store::subscriptions::all(&ctx.pool).await?.into_iter().filter(|s| s.expires_at > now);
        live.map(|s| s.meeting_external_id).collect()
    } else {
        HashSet::new()
    };
    let pace = RateLimiter::direct(Quota::per_second(NonZeroU32::new(LISTS_PER_SECOND).expect("not zero")));
    for event in store::readback::enrolled_events(&ctx.pool, AFTER_END).await? {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        if subscribed.contains(&event.meeting_external_id) {
            continue;
        }
        pace.until_ready().await;
        let at = VirtualEvent { kind, id: event.event_id.clone() };
        match read_event(ctx, &event.meeting_external_id, &at, event.organizer_id.as_deref()).await? {
            Ok(changed) => {
                report.changed += changed;
                report.events += 1;
            }
            Err(why) => {
                report.failed += 1;
                tracing::warn!(meeting = event.meeting_external_id, %at, error = why, "cannot read back statuses");
            }
        }
    }
    if report.changed > 0 || report.failed > 0 {
        tracing::info!(events = report.events, changed = report.changed, failed = report.failed, "status read-back");
    }
    Ok(report)
}

/// Reads one event's registration statuses and records them: how many
/// changed, or why Graph could not be read.
///
/// # Errors
/// The database failed.
pub async fn read_event(
    ctx: &Arc<Ctx>,
    meeting: &str,
    event: &VirtualEvent,
    organizer: Option<&str>,
) -> Result<Result<u64, String>, SyncError> {
    let organizer = OrganizerId(organizer.unwrap_or_default().to_owned());
    let read = ctx
        .read_beside(&organizer, |permit| async move {
            ctx.graph.list_event_registrations(permit, event, &mut Vec::new()).await
        })
        .await;
    let listed = match read {
        Ok(listed) => listed,
        Err(why) => return Ok(Err(why.to_string())),
    };
    super::engine::crash_point("readback-after-list");
    let seen: Vec<SeenStatus<'_>> = listed
        .iter()
        .map(|r| SeenStatus { id: &r.id, external_id: &r.external_id, status: r.status.as_str() })
        .collect();
    Ok(Ok(store::readback::record_statuses(&ctx.pool, meeting, &seen).await?))
}
