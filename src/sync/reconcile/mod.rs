//! One meeting, under its lease: look up what an unknown outcome left at
//! Graph, then make the one call that moves actual towards desired, and
//! record the outcome with the lease release.
//!
//! The exactly-once rules (docs/reliability.md, model/exactly_once.pml):
//! - a write is sent only after its intent (`needs_lookup`, where it goes)
//!   is committed, and only while the lease is ours and Graph is not held;
//! - while an outcome is unknown, the next step is a GET at the place the
//!   write went; regsync POSTs only when it knows no registration exists;
//! - every write after the claim is fenced by the lease token.

mod record;
mod resolve;

pub use resolve::LookupsInFlight;

use std::ops::ControlFlow;

use super::engine::{self, crash_point, Failure};
use super::plan::{after_create, after_delete, after_lookup, plan, Plan, Progress};
use super::sign_ins::TokenError;
use super::{throttle, Ctx, SyncError};
use crate::domain::RowState;
use crate::domain::{CallRecord, Desired, FailureCategory, Location, OrganizerId};
use crate::graph::{self, Deleted};
use crate::store::{self, Claimed, Intent, SendGate};

/// Lookup, delete, create and their retries after a conflict fit in this.
const MAX_STEPS: usize = 8;

/// What reconciling one meeting did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Desired equals actual; `created`/`deleted` say which calls it took.
    Synced {
        /// A registration was created.
        created: bool,
        /// A registration was deleted.
        deleted: bool,
    },
    /// Will be tried again.
    Retrying,
    /// Parked as failed.
    Failed,
    /// More to do at once (the step budget ran out).
    Pending,
    /// Another worker owns the meeting now; nothing was written.
    LeaseLost,
}

/// Reconciles one claimed meeting.
///
/// # Errors
/// [`SyncError::Auth`] when the app's credentials fail (the meeting is
/// released without losing an attempt; the caller stops calling Graph), and
/// [`SyncError::Store`] when its outcome could not be recorded (the intent
/// is committed, so the next owner looks the outcome up).
#[tracing::instrument(skip_all, fields(external_id = %claimed.external_id, organizer_id = %claimed.location.organizer))]
pub async fn reconcile(ctx: &Ctx, claimed: Claimed) -> Result<Reconciled, SyncError> {
    crash_point("after-claim");
    let acting = claimed.location.organizer.clone();
    let progress = Progress::from_claim(&claimed);
    engine::drive(Work { ctx, progress, claimed, calls: Vec::new(), reauthorized: false, acting }, MAX_STEPS).await
}

impl engine::Steps for Work<'_> {
    type Done = Reconciled;

    async fn step(&mut self) -> Step {
        Work::step(self).await
    }

    async fn record_failure(&mut self, e: &graph::Error) -> Result<Reconciled, SyncError> {
        Work::record_failure(self, e).await
    }
}

/// One meeting's reconcile in progress.
struct Work<'a> {
    ctx: &'a Ctx,
    claimed: Claimed,
    progress: Progress,
    /// Every Graph request so far, for the audit rows.
    calls: Vec<CallRecord>,
    /// A 401 was answered with a fresh token once already.
    reauthorized: bool,
    /// Whose token the current call carries: the organizer of the place it
    /// acts on (a delete at a previous organizer uses theirs).
    acting: OrganizerId,
}

/// How a step ends: go on to the next, or finish the reconcile.
pub(super) type Step = ControlFlow<Result<Reconciled, SyncError>>;

/// A step that passed the gate: send now.
pub(super) struct Cleared {
    permit: graph::Permit,
    /// This request is the probe after a throttle hold.
    probe: bool,
}

impl Work<'_> {
    /// Plans the next step and carries it out: through the gate, to Graph,
    /// and what its answer means.
    async fn step(&mut self) -> Step {
        if self.ctx.settings.graph.target.event_kind().is_some() {
            // A webinar or town hall is the meeting: nothing to enable; its registrants
            // carry the work.
            return ControlFlow::Break(self.record(RowState::Synced, None).await);
        }
        if let Some(lookup) = self.claimed.next_lookup() {
            if self.claimed.desired == Desired::Registered {
                return self.resolve(lookup).await;
            }
            // A cancelled meeting regsync never resolved: nothing of regsync's
            // can be at a place it never knew, so there is nothing to look at.
            self.claimed.graph_checked = true;
        }
        let step = plan(&self.claimed, &self.progress);
        let (at, intent) = match &step {
            Plan::Done => return ControlFlow::Break(self.record(RowState::Synced, None).await),
            Plan::Fail(reason) => {
                let failure = Failure::new(reason.clone(), FailureCategory::ForeignRegistration);
                return ControlFlow::Break(self.record(RowState::Failed, Some(failure)).await);
            }
            Plan::Lookup(at) => (at.clone(), None),
            Plan::Create(at) => (at.clone(), Some(Intent::Create(at))),
            Plan::Delete(at) => (at.clone(), Some(Intent::Delete(at))),
        };
        let is_write = intent.is_some();
        // The token (and the organizer's condition) before the slot, and
        // the slot and the pace before the gate, so the send follows the
        // gate at once and the slot is held for little but the request.
        let permit = self.take_permit(&at.organizer).await?;
        let slot = self.ctx.throttle.slot().await;
        let deleting = matches!(step, Plan::Delete(_));
        let Some(Cleared { permit, probe }) = self.pass_gate(deleting, intent, permit).await? else {
            return ControlFlow::Continue(());
        };
        if is_write {
            self.progress.needs_lookup = true;
            self.progress.lookup_at = Some(at.clone());
        }
        crash_point("after-intent");
        let result = self.send(&step, &at, permit).await;
        crash_point("after-response");
        self.ctx.throttle.answered(&self.ctx.pool, &result, probe, throttle::Call::RegistrationApi).await;
        drop(slot);
        self.learn(result, is_write).await
    }

    /// Leave to call Graph as `acting`: their token, unless their condition
    /// parks the row (recorded).
    pub(super) async fn take_permit(
        &mut self,
        acting: &OrganizerId,
    ) -> ControlFlow<Result<Reconciled, SyncError>, graph::Permit> {
        self.acting = acting.clone();
        match self.ctx.permit(acting).await {
            Ok(permit) => ControlFlow::Continue(permit),
            Err(TokenError::Graph(e)) => ControlFlow::Break(self.record_failure(&e).await),
            Err(TokenError::Store(e)) => ControlFlow::Break(Err(e.into())),
        }
    }

    /// Model step \[S3\]: with a send permit, checks the lease and the
    /// throttle, renews the lease and commits a write's intent, in one round
    /// trip. The permit is bounded to half the lease from here, on the
    /// monotonic clock: a process paused after the gate must not send once
    /// the lease may have passed to another worker.
    /// `Continue(None)`: nothing to send after all; plan again.
    pub(super) async fn pass_gate(
        &mut self,
        deleting: bool,
        intent: Option<Intent<'_>>,
        permit: graph::Permit,
    ) -> ControlFlow<Result<Reconciled, SyncError>, Option<Cleared>> {
        let gate_opened = engine::GateOpened::now();
        let settings = &self.ctx.settings;
        let gate = store::send::prepare_send(
            &self.ctx.pool,
            &self.claimed,
            intent,
            self.progress.actual.as_ref(),
            settings.sync.lease_ttl(),
            throttle::PROBE_TTL.min(settings.graph.timeout()),
        );
        // A gate given up on sends nothing: an intent it may have committed
        // is looked up by the row's next owner.
        let gate = store::bounded(settings.database.client_deadline(), "open the send gate", gate).await;
        let (held, probe) = match gate {
            Err(e) => return ControlFlow::Break(Err(e.into())),
            Ok(SendGate::LeaseLost) => {
                tracing::warn!("lease lost before sending; another worker owns the meeting");
                return ControlFlow::Break(Ok(Reconciled::LeaseLost));
            }
            Ok(SendGate::Throttled(wait)) => (Some(wait), false),
            Ok(SendGate::Contested { by }) if deleting => {
                // Another active meeting maps to this Teams meeting now: the
                // registration is its to adopt, not ours to delete.
                tracing::info!(meeting = %by, "handing the registration over to another meeting instead of deleting it");
                self.progress.actual = None;
                return ControlFlow::Continue(None);
            }
            Ok(SendGate::Contested { by }) => {
                let message = format!(
                    "waiting for platform meeting {by:?} to give up its registration of this Teams meeting \
                     (it is cancelled or moved, and its own sync removes or hands it over)"
                );
                return ControlFlow::Break(self.record_wait(message).await);
            }
            Ok(SendGate::Open { probe }) => (self.ctx.throttle.local_hold(), probe),
        };
        if let Some(wait) = held {
            let (wait, failure) = engine::wait_out_throttle(wait);
            return ControlFlow::Break(self.record_at(RowState::Retrying, wait, Some(failure)).await);
        }
        let permit = gate_opened.bound(permit, settings.sync.lease_ttl());
        ControlFlow::Continue(Some(Cleared { permit, probe }))
    }

    /// The one Graph request of this step.
    async fn send(&mut self, step: &Plan, at: &Location, permit: graph::Permit) -> Result<(), graph::Error> {
        let (graph, progress, calls) = (&self.ctx.graph, &mut self.progress, &mut self.calls);
        match step {
            Plan::Lookup(_) => graph.get(permit, at, calls).await.map(|found| after_lookup(progress, at, found)),
            Plan::Create(_) => graph
                .create(permit, at, self.claimed.allowed_registrant, calls)
                .await
                .map(|made| after_create(progress, at, made, &self.claimed)),
            Plan::Delete(_) => {
                graph.delete(permit, at, calls).await.map(|gone| after_delete(progress, gone == Deleted::Removed))
            }
            Plan::Done | Plan::Fail(_) => unreachable!("no request for a finished plan"),
        }
    }

    /// What an answer means for the next step, or how the reconcile ends.
    pub(super) async fn learn(&mut self, result: Result<(), graph::Error>, is_write: bool) -> Step {
        let conflict_unexplained = !is_write
            && std::mem::take(&mut self.progress.conflicted)
            && self.progress.actual.is_none()
            && self.progress.foreign_at.is_none();
        match result {
            Ok(()) if conflict_unexplained => {
                // 409, yet nothing there: do not POST again in a loop.
                let e = graph::Error::Transient {
                    status: Some(409),
                    may_have_acted: true,
                    detail: "Graph answered 409 Conflict but holds no registration".into(),
                };
                ControlFlow::Break(self.record_failure(&e).await)
            }
            Ok(()) => ControlFlow::Continue(()),
            Err(graph::Error::PermitExpired) => {
                tracing::warn!("paused past half the lease before sending; giving the meeting up unsent");
                ControlFlow::Break(self.record(RowState::Pending, None).await)
            }
            Err(graph::Error::Unauthorized) if !self.reauthorized => {
                // A revoked or rotated token: one more try with a fresh one,
                // through the same gate as every send.
                self.reauthorized = true;
                // A first 401 says nothing about the organizer yet.
                if let Err(e) = self.ctx.drop_refused_token(&self.acting).await {
                    return ControlFlow::Break(Err(e.into()));
                }
                self.progress.needs_lookup &= !is_write;
                ControlFlow::Continue(())
            }
            // Model step \[S7\] (model/exactly_once.pml).
            Err(graph::Error::Conflict { code }) => {
                tracing::info!(code, "create answered 409; looking up the existing registration");
                self.progress.conflicted = true;
                self.progress.needs_lookup = true;
                ControlFlow::Continue(())
            }
            Err(e) => {
                if is_write && e.maybe_acted() {
                    self.progress.write_unsettled = true;
                } else if is_write {
                    self.progress.needs_lookup = false;
                }
                ControlFlow::Break(self.record_failure(&e).await)
            }
        }
    }
}
