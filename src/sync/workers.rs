//! The reconcile of everything due now: the meetings through the engine,
//! then their registrants.

use std::sync::Arc;

use super::reconcile::{self, Reconciled};
use super::{engine, Ctx, SyncError};
use crate::store::{self, Claimed};

/// What reconciling the due meetings did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Meetings claimed.
    pub claimed: u64,
    /// Registrations created.
    pub created: u64,
    /// Registrations deleted.
    pub deleted: u64,
    /// Meetings synced (with or without a call).
    pub synced: u64,
    /// Meetings scheduled for a retry.
    pub retrying: u64,
    /// Meetings parked as failed.
    pub failed: u64,
    /// Outcomes not recorded because the lease was lost.
    pub lease_lost: u64,
    /// The registrants reconciled after the meetings.
    pub registrants: super::registrants::RegistrantReport,
}

impl ReconcileReport {
    fn add(&mut self, r: Reconciled) {
        match r {
            Reconciled::Synced { created, deleted } => {
                self.synced += 1;
                self.created += u64::from(created);
                self.deleted += u64::from(deleted);
            }
            Reconciled::Retrying => self.retrying += 1,
            Reconciled::Failed => self.failed += 1,
            Reconciled::Pending => {}
            Reconciled::LeaseLost => self.lease_lost += 1,
        }
    }
}

/// Claims and reconciles meetings until none is due now, through the
/// engine (`engine::reconcile_due`), then the registrants.
///
/// # Errors
/// [`SyncError::Auth`] when Graph credentials fail (claiming stops, running
/// work finishes); [`SyncError::Store`] when claiming fails.
pub async fn reconcile_due(ctx: &Arc<Ctx>) -> Result<ReconcileReport, SyncError> {
    if let Some(sign_ins) = &ctx.sign_ins {
        sign_ins.drop_signed_out(&ctx.pool).await?;
    }
    let mut report = engine::reconcile_due(ctx, &Meetings).await?;
    // Registrants after their meetings: a meeting registered just now takes
    // its registrants in the same pass.
    if ctx.settings.registrants.enabled {
        report.registrants = super::registrants::reconcile_due(ctx).await?;
    }
    Ok(report)
}

/// Meetings, as the engine reconciles them.
struct Meetings;

impl engine::Kind for Meetings {
    type Row = Claimed;
    type Done = Reconciled;
    type Report = ReconcileReport;

    async fn claim(&self, ctx: &Ctx, want: u32) -> Result<Vec<Claimed>, SyncError> {
        let sync = &ctx.settings.sync;
        let claim = store::claims::claim_due(&ctx.pool, want, sync.lease_ttl(), sync.max_attempts, ctx.replica);
        Ok(store::bounded(ctx.settings.database.client_deadline(), "claim due meetings", claim).await?)
    }

    const TABLE: store::claims::Table = store::claims::Table::Meetings;

    fn lease(row: &Claimed) -> store::claims::Lease {
        row.claim.lease
    }

    async fn reconcile(ctx: Arc<Ctx>, row: Claimed) -> Result<Reconciled, SyncError> {
        reconcile::reconcile(&ctx, row).await
    }

    fn add(report: &mut ReconcileReport, done: Reconciled) {
        report.add(done);
    }

    fn claimed(report: &mut ReconcileReport, n: usize) {
        report.claimed += n as u64;
    }
}
