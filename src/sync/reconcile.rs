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

use std::time::{Duration, Instant};

use crate::domain::CallRecord;
use crate::graph::{self, Deleted};
use crate::store::{self, Claimed, Intent, NextState, Outcome, SendGate};

use super::plan::{after_create, after_lookup, plan, Plan, Progress};
use super::retry::{self, AfterFailure, Decision};
use super::{throttle, Ctx, SyncError};

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
    let mut progress = Progress {
        actual: claimed.actual.clone(),
        needs_lookup: claimed.needs_lookup,
        lookup_at: claimed.lookup_at.clone(),
        foreign_at: None,
        conflicted: false,
        attempts: claimed.attempts,
        created: false,
        deleted: false,
        checked: false,
        write_unsettled: false,
    };
    let mut calls = Vec::new();
    let mut token_refreshed = false;
    for _ in 0..MAX_STEPS {
        let step = plan(&claimed, &progress);
        let (at, intent) = match &step {
            Plan::Done => return record(ctx, &claimed, &progress, NextState::Synced, None, &calls).await,
            Plan::Fail(reason) => {
                let failure = Failure { message: reason.clone(), http_status: None };
                return record(ctx, &claimed, &progress, NextState::Failed, Some(failure), &calls).await;
            }
            Plan::Lookup(at) => (at.clone(), None),
            Plan::Create(at) => (at.clone(), Some(Intent::Create(at))),
            Plan::Delete(at) => (at.clone(), Some(Intent::Delete(at))),
        };
        let is_write = intent.is_some();
        // The slot, the pace and the token come before the gate, so the
        // send follows it at once.
        let slot = ctx.throttle.slot().await;
        let permit = match ctx.graph.permit().await {
            Ok(permit) => permit,
            Err(e) => return record_failure(ctx, &claimed, &mut progress, &e, &calls).await,
        };
        let gate_opened = Instant::now();
        let mut is_probe = false;
        let gate = store::claims::prepare_send(
            &ctx.pool,
            &claimed,
            intent,
            progress.actual.as_ref(),
            ctx.settings.sync.lease_ttl(),
            throttle::PROBE_TTL.min(ctx.settings.graph.timeout()),
        )
        .await?;
        let held = match gate {
            SendGate::LeaseLost => {
                tracing::warn!("lease lost before sending; another worker owns the meeting");
                return Ok(Reconciled::LeaseLost);
            }
            SendGate::Throttled(wait) => Some(wait),
            SendGate::Contested { by } if matches!(step, Plan::Delete(_)) => {
                // Another active meeting maps to this Teams meeting now: the
                // registration is its to adopt, not ours to delete.
                tracing::info!(meeting = %by, "handing the registration over to another meeting instead of deleting it");
                progress.actual = None;
                continue;
            }
            SendGate::Contested { by } => {
                let message = format!(
                    "waiting for platform meeting {by:?} to give up its registration of this Teams meeting \
                     (it is cancelled or moved, and its own sync removes or hands it over)"
                );
                return record_wait(ctx, &claimed, &mut progress, message, &calls).await;
            }
            SendGate::Open { probe } => {
                is_probe = probe;
                ctx.throttle.local_hold()
            }
        };
        if let Some(wait) = held {
            // Another request's throttle: wait it out without touching the hold.
            let failure = Failure {
                message: format!("waiting out Graph throttling ({:.1} s)", wait.as_secs_f64()),
                http_status: None,
            };
            let wait = retry::throttle_wait(wait, rand::random());
            return record_at(ctx, &claimed, &progress, NextState::Retrying, wait, Some(failure), &calls).await;
        }
        if is_write {
            progress.needs_lookup = true;
            progress.lookup_at = Some(at.clone());
        }
        // The pre-send guard on the monotonic clock: a process paused after
        // renewing its lease must not send once the lease may have passed
        // to another worker. The client checks it right before the request.
        let permit = permit.send_by(gate_opened + ctx.settings.sync.lease_ttl() / 2);
        crash_point("after-intent");
        let result = match step {
            Plan::Lookup(_) => {
                ctx.graph.get(permit, &at, &mut calls).await.map(|found| after_lookup(&mut progress, &at, found))
            }
            Plan::Create(_) => ctx
                .graph
                .create(permit, &at, claimed.allowed_registrant, &mut calls)
                .await
                .map(|made| after_create(&mut progress, &at, made, &claimed)),
            Plan::Delete(_) => ctx.graph.delete(permit, &at, &mut calls).await.map(|gone| {
                progress.actual = None;
                progress.needs_lookup = false;
                progress.checked = true;
                progress.deleted |= gone == Deleted::Removed;
            }),
            Plan::Done | Plan::Fail(_) => unreachable!("handled above"),
        };
        drop(slot);
        crash_point("after-response");
        // Anything but a throttle (or a missing token: nothing reached Graph)
        // shows Graph is taking requests again.
        if !matches!(result, Err(graph::Error::Throttled { .. } | graph::Error::Token { .. })) {
            ctx.throttle.answered(&ctx.pool, is_probe).await;
        }
        let conflict_unexplained = !is_write
            && std::mem::take(&mut progress.conflicted)
            && progress.actual.is_none()
            && progress.foreign_at.is_none();
        match result {
            Ok(()) if conflict_unexplained => {
                // 409, yet nothing there: do not POST again in a loop.
                let e = graph::Error::Transient {
                    status: Some(409),
                    may_have_acted: true,
                    detail: "Graph answered 409 Conflict but holds no registration".into(),
                };
                return record_failure(ctx, &claimed, &mut progress, &e, &calls).await;
            }
            Ok(()) => {}
            Err(graph::Error::PermitExpired) => {
                tracing::warn!("paused past half the lease before sending; giving the meeting up unsent");
                return record(ctx, &claimed, &progress, NextState::Pending, None, &calls).await;
            }
            Err(graph::Error::Unauthorized) if !token_refreshed => {
                // A revoked or rotated token: one more try with a fresh one,
                // through the same gate as every send.
                token_refreshed = true;
                progress.needs_lookup &= !is_write;
            }
            // Model step \[S7\] (model/exactly_once.pml).
            Err(graph::Error::Conflict { code }) => {
                tracing::info!(code, "create answered 409; looking up the existing registration");
                progress.conflicted = true;
                progress.needs_lookup = true;
            }
            Err(e) => {
                if is_write && e.maybe_acted() {
                    progress.write_unsettled = true;
                } else if is_write {
                    progress.needs_lookup = false;
                }
                return record_failure(ctx, &claimed, &mut progress, &e, &calls).await;
            }
        }
    }
    // Every step so far answered, yet the meeting did not settle: count it
    // as a failed attempt, so it backs off and ends `failed`, never loops.
    let e = graph::Error::Transient {
        status: calls.last().and_then(|c| c.http_status),
        may_have_acted: true,
        detail: format!("the meeting did not settle within {MAX_STEPS} Graph calls"),
    };
    record_failure(ctx, &claimed, &mut progress, &e, &calls).await
}

/// Aborts the process here when the crash-matrix tests ask for it (the
/// `failpoints` feature and `FAILPOINTS=<name>=return`); nothing otherwise.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn crash_point(name: &str) {
    fail_point!(name, |_| std::process::abort());
}

/// Model step \[S9\] (model/exactly_once.pml).
///
/// How long the lookup of an unknown outcome must wait: a write Graph may
/// still be working on finishes within the request timeout.
fn lookup_settle(ctx: &Ctx, progress: &Progress) -> Duration {
    if progress.write_unsettled {
        ctx.settings.graph.timeout()
    } else {
        Duration::ZERO
    }
}

/// The error policy's settings for this meeting.
fn retry_policy(ctx: &Ctx, progress: &Progress) -> retry::Policy {
    let s = &ctx.settings.sync;
    retry::Policy {
        max_attempts: s.max_attempts,
        base: Duration::from_millis(s.backoff_base_ms),
        cap: Duration::from_millis(s.backoff_max_ms),
        settle: lookup_settle(ctx, progress),
    }
}

struct Failure {
    message: String,
    http_status: Option<u16>,
}

async fn record_failure(
    ctx: &Ctx,
    claimed: &Claimed,
    progress: &mut Progress,
    e: &graph::Error,
    calls: &[CallRecord],
) -> Result<Reconciled, SyncError> {
    let failure = Failure { message: e.to_string(), http_status: e.http_status() };
    let policy = retry_policy(ctx, progress);
    let before = u32::try_from(progress.attempts).unwrap_or(0);
    let (next, attempts) = retry::after_failure(e, before, policy, rand::random());
    progress.attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
    match next {
        AfterFailure::AuthPause => {
            tracing::error!(error = %e, "Graph credentials failed; stopping Graph calls for this cycle");
            // The app's trouble, not the meeting's: it is due again at once,
            // so the first cycle after the fix syncs it.
            let state =
                if progress.attempts > 0 || progress.needs_lookup { NextState::Retrying } else { NextState::Pending };
            record(ctx, claimed, progress, state, Some(failure), calls).await?;
            Err(SyncError::Auth(e.to_string()))
        }
        AfterFailure::Hold(wait) => record_throttled(ctx, claimed, progress, wait, calls).await,
        AfterFailure::Park => {
            tracing::warn!(error = %e, "permanent Graph error; meeting parked as failed");
            record(ctx, claimed, progress, NextState::Failed, Some(failure), calls).await
        }
        AfterFailure::Attempt(Decision::RetryAfter(delay)) => {
            tracing::warn!(error = %e, attempts, retry_in_ms = delay.as_millis() as u64, "Graph call failed; will retry");
            record_at(ctx, claimed, progress, NextState::Retrying, delay, Some(failure), calls).await
        }
        AfterFailure::Attempt(Decision::Park) => {
            tracing::error!(error = %e, attempts, "attempts exhausted; meeting parked as failed");
            let failure = Failure {
                message: format!(
                    "gave up after {attempts} attempts (sync.max_attempts); last error: {e}. \
                     Run `regsync retry {}` once the cause is fixed",
                    claimed.external_id
                ),
                ..failure
            };
            record(ctx, claimed, progress, NextState::Failed, Some(failure), calls).await
        }
    }
}

/// Waits for another meeting without sending: counts an attempt, so a
/// meeting that never gets its turn ends `failed` with the reason.
async fn record_wait(
    ctx: &Ctx,
    claimed: &Claimed,
    progress: &mut Progress,
    message: String,
    calls: &[CallRecord],
) -> Result<Reconciled, SyncError> {
    let policy = retry_policy(ctx, progress);
    let attempts = u32::try_from(progress.attempts).unwrap_or(0).saturating_add(1);
    progress.attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
    let failure = Some(Failure { message, http_status: None });
    match retry::next_attempt(attempts, policy.max_attempts, policy.base, policy.cap, rand::random()) {
        Decision::RetryAfter(delay) => {
            record_at(ctx, claimed, progress, NextState::Retrying, delay, failure, calls).await
        }
        Decision::Park => record(ctx, claimed, progress, NextState::Failed, failure, calls).await,
    }
}

/// Holds the whole deployment for `wait` and releases the meeting until
/// then, without counting an attempt.
async fn record_throttled(
    ctx: &Ctx,
    claimed: &Claimed,
    progress: &Progress,
    wait: Duration,
    calls: &[CallRecord],
) -> Result<Reconciled, SyncError> {
    let held = ctx.throttle.throttled(&ctx.pool, wait).await?;
    ctx.metrics.throttled();
    tracing::info!(hold_ms = held.as_millis() as u64, "Graph is throttling; holding all requests");
    let failure = Failure {
        message: format!("throttled by Graph; retrying in {:.1} s", held.as_secs_f64()),
        http_status: calls.last().and_then(|c| c.http_status),
    };
    record_at(ctx, claimed, progress, NextState::Retrying, held, Some(failure), calls).await
}

async fn record(
    ctx: &Ctx,
    claimed: &Claimed,
    progress: &Progress,
    state: NextState,
    failure: Option<Failure>,
    calls: &[CallRecord],
) -> Result<Reconciled, SyncError> {
    record_at(ctx, claimed, progress, state, Duration::ZERO, failure, calls).await
}

async fn record_at(
    ctx: &Ctx,
    claimed: &Claimed,
    progress: &Progress,
    state: NextState,
    delay: Duration,
    failure: Option<Failure>,
    calls: &[CallRecord],
) -> Result<Reconciled, SyncError> {
    let outcome = Outcome {
        state,
        actual: progress.actual.clone(),
        needs_lookup: progress.needs_lookup,
        lookup_at: if progress.needs_lookup { progress.lookup_at.clone() } else { None },
        attempts: if state == NextState::Synced { 0 } else { progress.attempts },
        next_attempt_in: delay,
        last_error: failure.as_ref().map(|f| f.message.clone()),
        last_http_status: failure.and_then(|f| f.http_status),
        checked: progress.checked,
        lookup_settle: lookup_settle(ctx, progress),
    };
    ctx.metrics.graph_calls(calls);
    let applied = ctx.record_with_retries(claimed, &outcome, calls).await?;
    crash_point("after-record");
    if !applied {
        tracing::warn!("outcome not recorded: the lease passed to another worker, which will look the outcome up");
        return Ok(Reconciled::LeaseLost);
    }
    let (reconciled, kind) = match state {
        NextState::Synced => (Reconciled::Synced { created: progress.created, deleted: progress.deleted }, "synced"),
        NextState::Retrying => (Reconciled::Retrying, "retrying"),
        NextState::Failed => (Reconciled::Failed, "failed"),
        NextState::Pending => (Reconciled::Pending, "pending"),
    };
    ctx.metrics.outcome(kind);
    Ok(reconciled)
}
