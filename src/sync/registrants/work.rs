//! One registrant's reconcile under its lease: the step the pure plan
//! names, each Graph call through the gate that commits its intent, and
//! the outcome written fenced with its audit rows.

use std::ops::ControlFlow;
use std::time::Duration;

use super::super::engine::{self, crash_point, Failure};
use super::super::sign_ins::TokenError;
use super::super::{throttle, Ctx, SyncError};
use super::plan::{after_event_lookup, plan, Progress, Step, WriteBacks};
use super::Done;
use crate::config::Target;
use crate::domain::RowState;
use crate::domain::{CallRecord, FailureCategory, OrganizerId, RegistrantsAt};
use crate::graph::{self, Deleted};
use crate::store::registrants::ClaimedRegistrant;
use crate::store::{self, Gate};

/// Steps one reconcile may take: a lookup, a removal, an enrolment and the
/// lookup of a webinar registration's id fit.
const MAX_STEPS: usize = 6;

/// The longest a registrant waits for its meeting before it looks again.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// One registrant's reconcile in progress.
pub(super) struct Work<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) claimed: ClaimedRegistrant,
    pub(super) progress: Progress,
    pub(super) calls: Vec<CallRecord>,
    pub(super) done: Done,
    /// Whose token the current call carries.
    pub(super) acting: OrganizerId,
    /// A 401 was answered with a fresh token once already.
    pub(super) reauthorized: bool,
    /// The answers to the event's registration questions, for its enrolment.
    pub(super) answers: Vec<crate::domain::QuestionAnswer>,
}

pub(super) type Flow = ControlFlow<Result<Done, SyncError>>;

pub(super) async fn reconcile(ctx: &Ctx, claimed: ClaimedRegistrant) -> Result<Done, SyncError> {
    let progress = Progress::from_claim(&claimed);
    let acting = OrganizerId(claimed.meeting.as_ref().and_then(|m| m.organizer_id.clone()).unwrap_or_default());
    engine::drive(
        Work {
            ctx,
            claimed,
            progress,
            calls: Vec::new(),
            done: Done::default(),
            acting,
            reauthorized: false,
            answers: Vec::new(),
        },
        MAX_STEPS,
    )
    .await
}

impl engine::Steps for Work<'_> {
    type Done = Done;

    async fn step(&mut self) -> Flow {
        Work::step(self).await
    }

    async fn record_failure(&mut self, e: &graph::Error) -> Result<Done, SyncError> {
        self.failed(e).await
    }
}

impl Work<'_> {
    /// The organizer of the registrant's meeting, as the platform says now.
    pub(super) fn meeting_organizer(&self) -> OrganizerId {
        OrganizerId(self.claimed.meeting.as_ref().and_then(|m| m.organizer_id.clone()).unwrap_or_default())
    }

    pub(super) fn target(&self) -> Target {
        self.ctx.settings.graph.target
    }

    async fn step(&mut self) -> Flow {
        let writeback = &self.ctx.settings.writeback;
        let write_back = WriteBacks { link: !writeback.url.is_empty(), status: !writeback.status_url.is_empty() };
        let step = plan(&self.claimed, &self.progress, self.target(), write_back);
        match step {
            Step::Done => ControlFlow::Break(self.record(RowState::Synced, Duration::ZERO, None).await),
            Step::Wait(why) if self.claimed.meeting.is_none() => {
                // A meeting the platform does not list may never come: each
                // look costs an attempt, and the registrant ends `failed`.
                // Its meeting's first listing makes it due again.
                let parked = format!(
                    "the platform does not list meeting {:?}, so this registrant cannot be enrolled: check the \
                     registrant's meeting id on the platform; the meeting's first listing makes it due again",
                    self.claimed.meeting_external_id
                );
                let waiting = Failure::new(why, FailureCategory::MeetingNotReady);
                ControlFlow::Break(self.attempt(waiting, Failure::new(parked, FailureCategory::PlatformData)).await)
            }
            Step::Wait(why) => {
                // Woken when the meeting is ready (`start_round`); the wait
                // bounds how long a missed wake-up costs.
                let wait = Duration::from_millis(self.ctx.settings.sync.backoff_max_ms).min(MAX_WAIT);
                let failure = Some(Failure::new(why, FailureCategory::MeetingNotReady));
                ControlFlow::Break(self.record(RowState::Retrying, wait, failure).await)
            }
            Step::Fail(why, category) => {
                self.done.failed = true;
                ControlFlow::Break(
                    self.record(RowState::Failed, Duration::ZERO, Some(Failure::new(why, category))).await,
                )
            }
            Step::WriteBack => self.write_back().await,
            Step::WriteStatus(status) => self.write_status(status).await,
            Step::Forget => {
                let p = &mut self.progress;
                (p.enrolled_at, p.registrant_id, p.join_web_url, p.teams_status) = (None, None, None, None);
                ControlFlow::Continue(())
            }
            Step::Lookup(at) => self.graph_step(Step::Lookup(at.clone()), at, None).await,
            Step::Enrol(at) => {
                if let RegistrantsAt::Event(event) = &at {
                    self.answers = self.prepare_registration(event).await?;
                }
                let key = at.key();
                self.graph_step(Step::Enrol(at.clone()), at, Some(key)).await
            }
            Step::Remove(at) => {
                let key = at.key();
                self.graph_step(Step::Remove(at.clone()), at, Some(key)).await
            }
            // A cancel is safe to repeat: no intent to commit.
            Step::CancelDuplicate(at, id) => self.graph_step(Step::CancelDuplicate(at.clone(), id), at, None).await,
        }
    }

    /// Leave to call Graph as `acting`: their token, unless their condition
    /// parks the row (recorded). Taken before the call's slot, so the slot
    /// is held for little but the request.
    pub(super) async fn take_permit(
        &mut self,
        acting: OrganizerId,
    ) -> ControlFlow<Result<Done, SyncError>, graph::Permit> {
        self.acting = acting;
        match self.ctx.permit(&self.acting).await {
            Ok(permit) => ControlFlow::Continue(permit),
            Err(TokenError::Graph(e)) => ControlFlow::Break(self.failed(&e).await),
            Err(TokenError::Store(e)) => ControlFlow::Break(Err(e.into())),
        }
    }

    /// `permit` through the gate (throttle, lease, and for a write its
    /// intent committed). `None`: plan again.
    pub(super) async fn pass_gate(
        &mut self,
        write_at: Option<String>,
        permit: graph::Permit,
    ) -> ControlFlow<Result<Done, SyncError>, Option<(graph::Permit, bool)>> {
        let opened = engine::GateOpened::now();
        let settings = &self.ctx.settings;
        let gate = store::registrants::prepare_send(
            &self.ctx.pool,
            &self.claimed,
            write_at.as_deref(),
            settings.sync.lease_ttl(),
            throttle::PROBE_TTL.min(settings.graph.timeout()),
        );
        let gate = store::bounded(settings.database.client_deadline(), "open the send gate", gate).await;
        match gate {
            Err(e) => ControlFlow::Break(Err(e.into())),
            Ok(Gate::Throttled(wait)) => {
                let (wait, failure) = engine::wait_out_throttle(wait);
                ControlFlow::Break(self.record(RowState::Retrying, wait, Some(failure)).await)
            }
            Ok(Gate::Open { probe }) => {
                if let Some(at) = write_at {
                    self.progress.needs_lookup = true;
                    self.progress.lookup_at = RegistrantsAt::from_key(&at);
                }
                let permit = opened.bound(permit, settings.sync.lease_ttl());
                ControlFlow::Continue(Some((permit, probe)))
            }
            Ok(Gate::LeaseLost) => {
                tracing::warn!("lease lost before sending; another worker owns the registrant");
                ControlFlow::Break(Ok(Done::default()))
            }
        }
    }

    /// One Graph call of `step` at `at`; `write_at` for a write.
    async fn graph_step(&mut self, step: Step, at: RegistrantsAt, write_at: Option<String>) -> Flow {
        let is_write = write_at.is_some();
        // A call at a place acts with the token of that place's organizer: a
        // removal under a previous organizer's registration uses theirs.
        let acting = match &at {
            RegistrantsAt::Meeting(location, _) => location.organizer.clone(),
            RegistrantsAt::Event(_) => self.meeting_organizer(),
        };
        let permit = self.take_permit(acting).await?;
        // A write waits for the deployment's budget unclaimed: a row held
        // while the budget is spent would lose its lease (and the place it
        // then took), and the queue's order decides who goes when it frees.
        let _paced = match (is_write, &at) {
            (true, RegistrantsAt::Event(_)) => match self.ctx.virtual_event_writes.take(&self.ctx.pool).await {
                Ok(Ok(place)) => Some(place),
                Ok(Err(wait)) => {
                    let why = format!(
                        "waiting for the deployment's virtual-event write budget \
                         (graph.virtual_event_writes_per_30s, {:.1} s)",
                        wait.as_secs_f64()
                    );
                    let failure = Failure::new(why, FailureCategory::Throttled);
                    return ControlFlow::Break(self.record(RowState::Retrying, wait, Some(failure)).await);
                }
                Err(e) => return ControlFlow::Break(Err(e.into())),
            },
            _ => None,
        };
        let slot = self.ctx.throttle.slot().await;
        let Some((permit, probe)) = self.pass_gate(write_at, permit).await? else { return ControlFlow::Continue(()) };
        crash_point("registrant-after-intent");
        let result = self.call(&step, &at, permit).await;
        crash_point("registrant-after-response");
        self.ctx.throttle.answered(&self.ctx.pool, &result, probe, throttle::Call::RegistrationApi).await;
        drop(slot);
        match result {
            Ok(()) if self.progress.unlisted_for.is_some() => {
                let remaining = self.progress.unlisted_for.take().unwrap_or_default();
                let why = format!(
                    "the event does not list the registration whose create answer was lost; looking again for \
                     up to {:.0} s more (graph.list_settle_secs) before registering again",
                    remaining.as_secs_f64()
                );
                let failure = Some(Failure::new(why, FailureCategory::Transient));
                // One lookup per request timeout while it may still appear.
                let again = remaining.min(self.ctx.settings.graph.timeout());
                ControlFlow::Break(self.record(RowState::Retrying, again, failure).await)
            }
            Ok(()) => {
                if matches!(step, Step::Enrol(_)) {
                    // Recorded before the write-back: a crash in between
                    // loses no enrolment, and the write-back follows.
                    return ControlFlow::Break(self.record(RowState::Pending, Duration::ZERO, None).await);
                }
                ControlFlow::Continue(())
            }
            Err(graph::Error::Unauthorized) if !self.reauthorized && self.ctx.sign_ins.is_some() => {
                // The organizer's token was refused: one more try with a
                // fresh one, through the same gate, as for meetings.
                self.reauthorized = true;
                // A first 401 says nothing about the organizer yet.
                if let Err(e) = self.ctx.drop_refused_token(&self.acting).await {
                    return ControlFlow::Break(Err(e.into()));
                }
                self.progress.needs_lookup &= !is_write;
                ControlFlow::Continue(())
            }
            Err(graph::Error::Conflict { code }) => {
                tracing::info!(code, "enrolment answered 409; looking up what Graph holds");
                self.progress.needs_lookup = true;
                self.progress.lookup_at = Some(at);
                ControlFlow::Continue(())
            }
            Err(e) => {
                if is_write && !e.maybe_acted() {
                    self.progress.needs_lookup = false;
                }
                ControlFlow::Break(self.failed(&e).await)
            }
        }
    }

    /// The request of `step` and what its answer means for the progress.
    async fn call(&mut self, step: &Step, at: &RegistrantsAt, permit: graph::Permit) -> Result<(), graph::Error> {
        let (graph, c, p, calls) = (&self.ctx.graph, &self.claimed, &mut self.progress, &mut self.calls);
        let settings = &self.ctx.settings;
        match (step, at) {
            (Step::Lookup(_), RegistrantsAt::Meeting(location, _)) => {
                let exists = graph.registrant_exists(permit, location, &c.external_id, calls).await?;
                // Found: enrolled, but its join link is gone for good.
                p.enrolled_at = exists.then(|| at.clone());
                p.registrant_id = exists.then(|| c.external_id.clone());
                p.join_web_url = None;
            }
            (Step::Lookup(_), RegistrantsAt::Event(event)) => {
                let email = c.person.email.as_deref();
                let live = graph.find_event_registrations(permit, event, &c.external_id, email, calls).await?;
                let settle = settings.graph.list_settle();
                after_event_lookup(p, live, at, c.intent_age, settle).map_err(|detail| graph::Error::Transient {
                    status: None,
                    may_have_acted: false,
                    detail,
                })?;
                if p.unlisted_for.is_some() {
                    // Possibly registered: the outcome stays unknown.
                    return Ok(());
                }
            }
            (Step::Enrol(_), RegistrantsAt::Meeting(location, _)) => {
                let audience =
                    c.meeting.as_ref().map_or(crate::domain::AllowedRegistrant::Everyone, |m| m.allowed_registrant);
                let enrolled = graph.enrol(permit, location, &c.external_id, audience, &c.person, calls).await?;
                p.enrolled_at = Some(at.clone());
                p.registrant_id = Some(enrolled.id);
                p.join_web_url = Some(enrolled.join_web_url);
                self.done.enrolled = true;
            }
            (Step::Enrol(_), RegistrantsAt::Event(event)) => {
                let registration = graph::EventRegistration {
                    external_id: &c.external_id,
                    person: &c.person,
                    default_timezone: &settings.registrants.default_timezone,
                    default_language: &settings.registrants.default_language,
                    answers: &self.answers,
                };
                // 204: registered, its id found by the lookup that follows.
                p.registrant_id = graph.register_for_event(permit, event, registration, calls).await?;
                p.enrolled_at = Some(at.clone());
                self.done.enrolled = true;
            }
            (Step::Remove(_), at_graph) => {
                let removed = match (at_graph, p.registrant_id.clone()) {
                    (RegistrantsAt::Meeting(location, _), id) => {
                        let id = id.unwrap_or_else(|| c.external_id.clone());
                        graph.unenrol(permit, location, &id, calls).await?
                    }
                    (RegistrantsAt::Event(event), Some(id)) => {
                        graph.cancel_event_registration(permit, event, &id, calls).await?
                    }
                    // No id known: nothing regsync could cancel.
                    (RegistrantsAt::Event(_), None) => Deleted::AlreadyGone,
                };
                self.done.removed |= removed == Deleted::Removed;
                p.enrolled_at = None;
                p.registrant_id = None;
                p.join_web_url = None;
            }
            (Step::CancelDuplicate(_, id), RegistrantsAt::Event(event)) => {
                let cancelled = graph.cancel_event_registration(permit, event, id, calls).await?;
                tracing::warn!(registrant = c.external_id, duplicate = id, "cancelled a duplicate registration");
                self.done.removed |= cancelled == Deleted::Removed;
                p.duplicates.retain(|d| d != id);
                return Ok(());
            }
            _ => unreachable!("only lookups, enrolments, removals and duplicates' cancels call Graph"),
        }
        p.needs_lookup = false;
        p.lookup_at = None;
        Ok(())
    }
}
