//! Registrants: listed from the platform after the meetings, then each one
//! reconciled under its lease like a meeting — the gate commits a write's
//! intent, an unknown outcome is looked up before anything is written
//! again, and the outcome is written fenced with its audit rows. After an
//! enrolment is recorded, the join link (or the webinar registration id) is
//! written back to the platform once.

mod outcome;
mod pace;
mod plan;
mod poll;
mod webinar;
mod work;
mod write_back;

pub use pace::WritePace;
pub use poll::{poll, RegistrantPoll};
pub use webinar::WebinarStatuses;

use std::sync::Arc;

use tokio::task::JoinSet;

use super::{Ctx, SyncError};
use crate::store;
use work::reconcile;

/// What reconciling the due registrants did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrantReport {
    /// Registrants claimed.
    pub claimed: u64,
    /// Enrolled at Graph.
    pub enrolled: u64,
    /// Removed or cancelled at Graph.
    pub removed: u64,
    /// Written back to the platform.
    pub written_back: u64,
    /// Parked as failed.
    pub failed: u64,
}

/// Claims and reconciles registrants until none is due now, with as many
/// Graph calls in flight as the throttle allows.
///
/// # Errors
/// [`SyncError::Auth`] when Graph credentials fail; [`SyncError::Store`].
pub async fn reconcile_due(ctx: &Arc<Ctx>) -> Result<RegistrantReport, SyncError> {
    let mut total = RegistrantReport::default();
    // A lookup can lead to a removal, a removal to an enrolment, an
    // enrolment to its write-back: a few rounds finish what one started.
    for _ in 0..ROUNDS {
        let round = reconcile_round(ctx).await?;
        total.claimed += round.claimed;
        total.enrolled += round.enrolled;
        total.removed += round.removed;
        total.written_back += round.written_back;
        total.failed += round.failed;
        if round.enrolled + round.removed == 0 {
            break;
        }
    }
    Ok(total)
}

/// Rounds of [`reconcile_due`].
const ROUNDS: usize = 4;

/// What is due at the round's start, each registrant once.
async fn reconcile_round(ctx: &Arc<Ctx>) -> Result<RegistrantReport, SyncError> {
    let round = store::registrants::start_round(&ctx.pool).await?;
    let mut report = RegistrantReport::default();
    let mut running: JoinSet<Result<Done, SyncError>> = JoinSet::new();
    let mut stop = None;
    let mut drained = false;
    loop {
        let limit = ctx.throttle.limit();
        if stop.is_none() && !drained && running.len() < limit && ctx.throttle.local_hold().is_none() {
            let sync = &ctx.settings.sync;
            let want = u32::try_from(limit - running.len()).unwrap_or(1);
            let rows =
                store::registrants::claim_due(&ctx.pool, want, sync.lease_ttl(), sync.max_attempts, ctx.replica, round)
                    .await?;
            drained = rows.len() < want as usize;
            report.claimed += rows.len() as u64;
            for row in rows {
                let ctx = ctx.clone();
                running.spawn(async move { reconcile(&ctx, row).await });
            }
            if !drained {
                continue;
            }
        }
        let Some(done) = running.join_next().await else { break };
        drained = false;
        match done {
            Ok(Ok(done)) => {
                report.enrolled += u64::from(done.enrolled);
                report.removed += u64::from(done.removed);
                report.written_back += u64::from(done.written_back);
                report.failed += u64::from(done.failed);
            }
            Ok(Err(SyncError::Auth(e))) => {
                ctx.throttle.credentials_failed();
                stop.get_or_insert(SyncError::Auth(e));
            }
            Ok(Err(e)) => {
                stop.get_or_insert(e);
            }
            Err(e) => {
                stop.get_or_insert(SyncError::Task(e.to_string()));
            }
        }
        if stop.is_some() || ctx.shutdown.is_cancelled() {
            drained = true;
        }
    }
    match stop {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// What one registrant reconcile did.
#[derive(Debug, Clone, Copy, Default)]
struct Done {
    enrolled: bool,
    removed: bool,
    written_back: bool,
    failed: bool,
}
