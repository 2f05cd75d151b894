//! Changes made in Teams flow back: on `registrants.status_readback_secs`,
//! one replica lists the registrations of every event regsync registered
//! people for, and records each registration's status in Teams; a status
//! the platform was not told makes its registrant due, and the engine
//! writes it back (`writeback.status_*`). Reads are paced below Graph's
//! 750 GETs per 30 s per app for virtual events.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{Quota, RateLimiter};

use super::throttle::Call;
use super::{Ctx, SyncError};
use crate::domain::{OrganizerId, VirtualEvent};
use crate::store::{self, readback::SeenStatus};

/// Lists read per second: two thirds of Graph's 25 GETs a second, leaving
/// the rest to lookups and the engine's reads.
const LISTS_PER_SECOND: u32 = 16;

/// How long after an event ends its registrations still matter.
const AFTER_END: Duration = Duration::from_secs(86_400);

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
    if !store::readback::claim_job(&ctx.pool, "status_readback", Duration::from_secs(every)).await? {
        return Ok(None);
    }
    read_back(ctx).await.map(Some)
}

/// Reads every event's registration statuses once.
///
/// # Errors
/// The database failed.
pub async fn read_back(ctx: &Arc<Ctx>) -> Result<ReadBack, SyncError> {
    let mut report = ReadBack::default();
    let Some(kind) = ctx.settings.graph.target.event_kind() else { return Ok(report) };
    let pace = RateLimiter::direct(Quota::per_second(NonZeroU32::new(LISTS_PER_SECOND).expect("not zero")));
    for event in store::readback::enrolled_events(&ctx.pool, AFTER_END).await? {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        pace.until_ready().await;
        let organizer = OrganizerId(event.organizer_id.clone().unwrap_or_default());
        let at = VirtualEvent { kind, id: event.event_id.clone() };
        let listed = match ctx.permit(&organizer).await {
            Err(e) => Err(e.to_string()),
            Ok(permit) => {
                let slot = ctx.throttle.slot().await;
                let mut calls = Vec::new();
                let result = ctx.graph.list_event_registrations(permit, &at, &mut calls).await;
                ctx.throttle.answered(&ctx.pool, &result, false, Call::Other).await;
                drop(slot);
                result.map_err(|e| e.to_string())
            }
        };
        let listed = match listed {
            Ok(listed) => listed,
            Err(why) => {
                report.failed += 1;
                tracing::warn!(meeting = event.meeting_external_id, %at, error = why, "cannot read back statuses");
                continue;
            }
        };
        let seen: Vec<SeenStatus<'_>> = listed
            .iter()
            .map(|r| SeenStatus { id: &r.id, external_id: &r.external_id, status: r.status.as_str() })
            .collect();
        report.changed += store::readback::record_statuses(&ctx.pool, &event.meeting_external_id, &seen).await?;
        report.events += 1;
    }
    if report.changed > 0 || report.failed > 0 {
        tracing::info!(events = report.events, changed = report.changed, failed = report.failed, "status read-back");
    }
    Ok(report)
}
