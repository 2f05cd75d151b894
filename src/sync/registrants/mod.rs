//! Registrants: listed from the platform after the meetings, then each one
//! reconciled under its lease like a meeting — the gate commits a write's
//! intent, an unknown outcome is looked up before anything is written
//! again, and the outcome is written fenced with its audit rows. After an
//! enrolment is recorded, the join link (or the webinar or town hall registration id) is
//! written back to the platform once.

mod event;
mod outcome;
mod pace;
mod plan;
mod poll;
mod questions;
mod work;
mod write_back;

pub use event::EventFacts;
pub use pace::WritePace;
pub use poll::{poll, RegistrantPoll};

use std::sync::Arc;

use super::{engine, Ctx, SyncError};
use crate::store::{self, registrants::ClaimedRegistrant};
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

/// What is due at the round's start, each registrant once, through the
/// engine.
async fn reconcile_round(ctx: &Arc<Ctx>) -> Result<RegistrantReport, SyncError> {
    let round = store::registrants::start_round(&ctx.pool).await?;
    engine::reconcile_due(ctx, &Registrants { round }).await
}

/// Registrants, as the engine reconciles them: those due at `round`.
struct Registrants {
    round: chrono::DateTime<chrono::Utc>,
}

impl engine::Kind for Registrants {
    type Row = ClaimedRegistrant;
    type Done = Done;
    type Report = RegistrantReport;

    async fn claim(&self, ctx: &Ctx, want: u32) -> Result<Vec<ClaimedRegistrant>, SyncError> {
        let sync = &ctx.settings.sync;
        let (ttl, max_attempts) = (sync.lease_ttl(), sync.max_attempts);
        let claim = store::registrants::claim_due(&ctx.pool, want, ttl, max_attempts, ctx.replica, self.round);
        Ok(store::bounded(ctx.settings.database.client_deadline(), "claim due registrants", claim).await?)
    }

    const TABLE: store::claims::Table = store::claims::Table::Registrants;

    fn lease(row: &ClaimedRegistrant) -> store::claims::Lease {
        row.claim.lease
    }

    async fn reconcile(ctx: Arc<Ctx>, row: ClaimedRegistrant) -> Result<Done, SyncError> {
        reconcile(&ctx, row).await
    }

    fn add(report: &mut RegistrantReport, done: Done) {
        report.enrolled += u64::from(done.enrolled);
        report.removed += u64::from(done.removed);
        report.written_back += u64::from(done.written_back);
        report.failed += u64::from(done.failed);
    }

    fn claimed(report: &mut RegistrantReport, n: usize) {
        report.claimed += n as u64;
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
