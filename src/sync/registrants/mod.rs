//! Registrants: listed from the platform after the meetings, then each one
//! reconciled under its lease like a meeting — the gate commits a write's
//! intent, an unknown outcome is looked up before anything is written
//! again, and the outcome is written fenced with its audit rows. After an
//! enrolment is recorded, the join link (or the webinar registration id) is
//! written back to the platform once.

mod plan;

use std::collections::{HashMap, VecDeque};
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use self::plan::{plan, Progress, Step};
use super::sign_ins::TokenError;
use super::{retry, throttle, Ctx, SyncError};
use crate::config::Target;
use crate::domain::{CallRecord, ExternalRegistrant, FailureCategory, OrganizerId, RegistrantsAt};
use crate::graph::{self, Deleted};
use crate::source::{Next, PageRequest, RegistrantShape, Writeback};
use crate::store::registrants::{ClaimedRegistrant, RegistrantOutcome};
use crate::store::{self, NextState, SendGate};

/// Steps one reconcile may take: a lookup, a removal, an enrolment and the
/// lookup of a webinar registration's id fit.
const MAX_STEPS: usize = 6;

/// The longest a registrant waits for its meeting before it looks again.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// How long a webinar's status is trusted before it is read again.
const WEBINAR_STATUS_TTL: Duration = Duration::from_secs(60);

/// What one registrant listing read and changed.
#[derive(Debug, Clone, Default)]
pub struct RegistrantPoll {
    /// Registrants read, valid or not.
    pub seen: u64,
    /// Registrants inserted or changed.
    pub changed: u64,
    /// Items rejected.
    pub rejected: u64,
    /// Why a listing was partial, if one was.
    pub partial: Option<String>,
}

/// Lists every registrant (one listing, or one per active meeting) into the
/// store. A page that fails ends that listing; what was read is kept.
///
/// # Errors
/// The database failed.
pub async fn poll(ctx: &Arc<Ctx>, run_id: i64) -> Result<RegistrantPoll, SyncError> {
    let settings = &ctx.settings.registrants;
    // Validated at start; an error here is a bug, reported as one.
    let shape = RegistrantShape::new(settings).map_err(|e| SyncError::Task(e.to_string()))?;
    let meetings: Vec<Option<String>> = if settings.path.contains("{meeting_id}") {
        store::registrants::active_meetings(&ctx.pool).await?.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let mut report = RegistrantPoll::default();
    let mut seen = std::collections::HashSet::new();
    for meeting in meetings {
        let listing = match ctx.source.registrant_listing(settings, meeting.as_deref()) {
            Ok(listing) => listing,
            Err(e) => {
                report.partial = Some(e.to_string());
                continue;
            }
        };
        let mut request = PageRequest::First;
        let mut listed = 0u64;
        for _ in 0..ctx.source.max_pages() {
            let page = match ctx.source.fetch_registrants(&shape, &listing, &request).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(meeting = listing.meeting().unwrap_or(""), error = %e, "registrant listing partial");
                    report.partial = Some(e.to_string());
                    break;
                }
            };
            listed += page.items as u64;
            let next = ctx.source.next_registrants(&listing, &request, &page, listed);
            report.seen += page.items as u64;
            let mut rejected = page.rejected;
            let mut registrants: Vec<ExternalRegistrant> = Vec::with_capacity(page.accepted.len());
            for r in page.accepted {
                if seen.insert((r.meeting_external_id.clone(), r.external_id.clone())) {
                    registrants.push(r);
                } else {
                    rejected.push(crate::domain::RejectedItem {
                        reason: format!(
                            "registrant: id {:?} of meeting {:?} appears more than once in the listing; the first \
                             occurrence was used",
                            r.external_id, r.meeting_external_id
                        ),
                        external_id: Some(r.external_id),
                        raw: String::new(),
                    });
                }
            }
            report.rejected += rejected.len() as u64;
            store::runs::insert_rejected(&ctx.pool, run_id, &rejected).await?;
            report.changed += store::registrants::upsert_page(&ctx.pool, &registrants).await?;
            match next {
                Next::Page(next) => request = next,
                Next::End => break,
                Next::Partial(why) => {
                    report.partial = Some(why);
                    break;
                }
            }
        }
    }
    Ok(report)
}

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

/// Webinars' statuses as Graph last said, and when. One task at a time
/// holds it, so tasks that need the same status wait for one read.
#[derive(Default)]
pub struct WebinarStatuses(tokio::sync::Mutex<HashMap<String, (String, Instant)>>);

/// Microsoft's limit on virtual-event writes: at most `n` in any 30 s, per
/// process. A write counts from when it is sent until 30 s after its
/// answer: Graph counts it on arrival, which lies between the two, so no
/// 30-second window at Graph ever holds more than `n`.
pub struct WritePace {
    limit: usize,
    state: Mutex<PaceState>,
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct PaceState {
    /// When recent writes were answered.
    answered: VecDeque<Instant>,
    /// Writes sent and not answered yet.
    in_flight: usize,
}

/// The window of [`WritePace`].
const WRITE_WINDOW: Duration = Duration::from_secs(30);

/// One write under the pace; its answer time counts from drop.
pub struct PacedWrite<'a>(&'a WritePace);

impl Drop for PacedWrite<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight -= 1;
        state.answered.push_back(Instant::now());
        self.0.freed.notify_waiters();
    }
}

impl WritePace {
    /// At most `limit` writes per 30 s.
    pub fn new(limit: u32) -> Self {
        Self { limit: limit.max(1) as usize, state: Mutex::default(), freed: tokio::sync::Notify::new() }
    }

    /// Waits until one more write stays within the limit; hold the result
    /// until its answer has come.
    async fn acquire(&self) -> PacedWrite<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while state.answered.front().is_some_and(|at| now.duration_since(*at) >= WRITE_WINDOW) {
                    state.answered.pop_front();
                }
                if state.answered.len() + state.in_flight < self.limit {
                    state.in_flight += 1;
                    return PacedWrite(self);
                }
                state.answered.front().map(|oldest| *oldest + WRITE_WINDOW)
            };
            match wait {
                Some(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = freed => {}
                    }
                }
                None => freed.await,
            }
        }
    }
}

/// One registrant's reconcile in progress.
struct Work<'a> {
    ctx: &'a Ctx,
    claimed: ClaimedRegistrant,
    progress: Progress,
    calls: Vec<CallRecord>,
    done: Done,
}

type Flow = ControlFlow<Result<Done, SyncError>>;

async fn reconcile(ctx: &Ctx, claimed: ClaimedRegistrant) -> Result<Done, SyncError> {
    let progress = Progress::from_claim(&claimed);
    let mut work = Work { ctx, claimed, progress, calls: Vec::new(), done: Done::default() };
    for _ in 0..MAX_STEPS {
        if let ControlFlow::Break(done) = work.step().await {
            return done;
        }
    }
    let e = graph::Error::Transient {
        status: None,
        may_have_acted: true,
        detail: format!("the registrant did not settle within {MAX_STEPS} steps"),
    };
    work.failed(&e).await
}

impl Work<'_> {
    fn target(&self) -> Target {
        self.ctx.settings.graph.target
    }

    async fn step(&mut self) -> Flow {
        let write_back = !self.ctx.settings.writeback.url.is_empty();
        let step = plan(&self.claimed, &self.progress, self.target(), write_back);
        match step {
            Step::Done => ControlFlow::Break(self.record(NextState::Synced, Duration::ZERO, None).await),
            Step::Wait(why) => {
                // Woken when the meeting is ready (`start_round`); the wait
                // bounds how long a missed wake-up costs.
                let wait = Duration::from_millis(self.ctx.settings.sync.backoff_max_ms).min(MAX_WAIT);
                let failure = Some((why, None, FailureCategory::MeetingNotReady));
                ControlFlow::Break(self.record(NextState::Retrying, wait, failure).await)
            }
            Step::Fail(why, category) => {
                self.done.failed = true;
                ControlFlow::Break(self.record(NextState::Failed, Duration::ZERO, Some((why, None, category))).await)
            }
            Step::WriteBack => self.write_back().await,
            Step::Forget => {
                let p = &mut self.progress;
                (p.enrolled_at, p.registrant_id, p.join_web_url) = (None, None, None);
                ControlFlow::Continue(())
            }
            Step::Lookup(at) => self.graph_step(Step::Lookup(at.clone()), at, None).await,
            Step::Enrol(at) => {
                if let RegistrantsAt::Webinar(webinar) = &at {
                    if let ControlFlow::Break(done) = self.check_published(webinar).await {
                        return ControlFlow::Break(done);
                    }
                }
                let key = at.key();
                self.graph_step(Step::Enrol(at.clone()), at, Some(key)).await
            }
            Step::Remove(at) => {
                let key = at.key();
                self.graph_step(Step::Remove(at.clone()), at, Some(key)).await
            }
        }
    }

    /// A webinar that is not published takes no registrations that arrive:
    /// its registrants fail with that reason.
    async fn check_published(&mut self, webinar: &str) -> Flow {
        let ctx = self.ctx;
        let mut statuses = ctx.webinars.0.lock().await;
        let known = statuses.get(webinar).filter(|(_, at)| at.elapsed() < WEBINAR_STATUS_TTL).map(|(s, _)| s.clone());
        let status = match known {
            Some(status) => status,
            None => {
                let Some(permit) = self.pass_gate(None).await? else { return ControlFlow::Continue(()) };
                let slot = self.ctx.throttle.slot().await;
                let result = self.ctx.graph.webinar_status(permit.0, webinar, &mut self.calls).await;
                drop(slot);
                self.ctx.throttle.answered(&self.ctx.pool, &result, permit.1).await;
                match result {
                    Ok(status) => {
                        statuses.insert(webinar.to_owned(), (status.clone(), Instant::now()));
                        status
                    }
                    Err(e) => return ControlFlow::Break(self.failed(&e).await),
                }
            }
        };
        drop(statuses);
        if status.eq_ignore_ascii_case("published") {
            return ControlFlow::Continue(());
        }
        self.done.failed = true;
        let why = format!(
            "webinar {webinar} is {}, not published: registrations made before it is published never arrive; \
             publish it in Teams, then run `regsync retry --failed`",
            if status.is_empty() { "of no status" } else { &status }
        );
        ControlFlow::Break(
            self.record(NextState::Failed, Duration::ZERO, Some((why, None, FailureCategory::WebinarNotPublished)))
                .await,
        )
    }

    /// The permit for this registrant's call, through the gate (throttle,
    /// lease, and for a write its intent committed). `None`: plan again.
    async fn pass_gate(
        &mut self,
        write_at: Option<String>,
    ) -> ControlFlow<Result<Done, SyncError>, Option<(graph::Permit, bool)>> {
        let organizer =
            OrganizerId(self.claimed.meeting.as_ref().and_then(|m| m.organizer_id.clone()).unwrap_or_default());
        let permit = match self.ctx.permit(&organizer).await {
            Ok(permit) => permit,
            Err(TokenError::Graph(e)) => return ControlFlow::Break(self.failed(&e).await),
            Err(TokenError::Store(e)) => return ControlFlow::Break(Err(e.into())),
        };
        let opened = std::time::Instant::now();
        let settings = &self.ctx.settings;
        let gate = store::registrants::prepare_send(
            &self.ctx.pool,
            &self.claimed,
            write_at.as_deref(),
            settings.sync.lease_ttl(),
            throttle::PROBE_TTL.min(settings.graph.timeout()),
        )
        .await;
        match gate {
            Err(e) => ControlFlow::Break(Err(e.into())),
            Ok(SendGate::Throttled(wait)) => {
                let why = format!("waiting out Graph throttling ({:.1} s)", wait.as_secs_f64());
                let wait = retry::throttle_wait(wait, rand::random());
                ControlFlow::Break(
                    self.record(NextState::Retrying, wait, Some((why, None, FailureCategory::Throttled))).await,
                )
            }
            Ok(SendGate::Open { probe }) => {
                if let Some(at) = write_at {
                    self.progress.needs_lookup = true;
                    self.progress.lookup_at = RegistrantsAt::from_key(&at);
                }
                let permit = permit.send_by(opened + settings.sync.lease_ttl() / 2);
                ControlFlow::Continue(Some((permit, probe)))
            }
            Ok(_) => ControlFlow::Break(Ok(Done::default())),
        }
    }

    /// One Graph call of `step` at `at`; `write_at` for a write.
    async fn graph_step(&mut self, step: Step, at: RegistrantsAt, write_at: Option<String>) -> Flow {
        let is_write = write_at.is_some();
        let _paced = match (is_write, &at) {
            (true, RegistrantsAt::Webinar(_)) => Some(self.ctx.virtual_event_writes.acquire().await),
            _ => None,
        };
        let slot = self.ctx.throttle.slot().await;
        let Some((permit, probe)) = self.pass_gate(write_at).await? else { return ControlFlow::Continue(()) };
        crash_point("registrant-after-intent");
        let result = self.call(&step, &at, permit).await;
        drop(slot);
        crash_point("registrant-after-response");
        self.ctx.throttle.answered(&self.ctx.pool, &result, probe).await;
        match result {
            Ok(()) if self.progress.unlisted_for.is_some() => {
                let remaining = self.progress.unlisted_for.take().unwrap_or_default();
                let why = format!(
                    "the webinar does not list the registration whose create answer was lost; looking again for \
                     up to {:.0} s more (graph.list_settle_secs) before registering again",
                    remaining.as_secs_f64()
                );
                let failure = Some((why, None, FailureCategory::Transient));
                // One lookup per request timeout while it may still appear.
                let again = remaining.min(self.ctx.settings.graph.timeout());
                ControlFlow::Break(self.record(NextState::Retrying, again, failure).await)
            }
            Ok(()) => {
                if matches!(step, Step::Enrol(_)) {
                    // Recorded before the write-back: a crash in between
                    // loses no enrolment, and the write-back follows.
                    return ControlFlow::Break(self.record(NextState::Pending, Duration::ZERO, None).await);
                }
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
            (Step::Lookup(_), RegistrantsAt::Webinar(webinar)) => {
                let found = graph.find_webinar_registration(permit, webinar, &c.external_id, calls).await?;
                // Graph's list lags behind its writes: a create whose
                // outcome is unknown is "possibly registered" until it has
                // been unlisted for the settle time.
                let settle = settings.graph.list_settle();
                match (found.is_none() && p.needs_lookup, c.intent_age) {
                    (true, Some(age)) if age < settle => {
                        p.unlisted_for = Some(settle - age);
                        return Ok(());
                    }
                    _ => {}
                }
                if found.is_none() && p.enrolled_at.is_some() {
                    // Graph accepted it (204) yet does not list it: never
                    // register again on that; look again later.
                    return Err(graph::Error::Transient {
                        status: None,
                        may_have_acted: false,
                        detail: format!("webinar {webinar} does not list the registration it accepted yet"),
                    });
                }
                p.enrolled_at = found.is_some().then(|| at.clone());
                p.registrant_id = found;
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
            (Step::Enrol(_), RegistrantsAt::Webinar(webinar)) => {
                let registration = graph::WebinarRegistration {
                    external_id: &c.external_id,
                    person: &c.person,
                    default_timezone: &settings.registrants.default_timezone,
                    default_language: &settings.registrants.default_language,
                };
                // 204: registered, its id found by the lookup that follows.
                p.registrant_id = graph.register_for_webinar(permit, webinar, registration, calls).await?;
                p.enrolled_at = Some(at.clone());
                self.done.enrolled = true;
            }
            (Step::Remove(_), at_graph) => {
                let removed = match (at_graph, p.registrant_id.clone()) {
                    (RegistrantsAt::Meeting(location, _), id) => {
                        let id = id.unwrap_or_else(|| c.external_id.clone());
                        graph.unenrol(permit, location, &id, calls).await?
                    }
                    (RegistrantsAt::Webinar(webinar), Some(id)) => {
                        graph.cancel_webinar_registration(permit, webinar, &id, calls).await?
                    }
                    // No id known: nothing regsync could cancel.
                    (RegistrantsAt::Webinar(_), None) => Deleted::AlreadyGone,
                };
                self.done.removed |= removed == Deleted::Removed;
                p.enrolled_at = None;
                p.registrant_id = None;
                p.join_web_url = None;
            }
            _ => unreachable!("only lookups, enrolments and removals call Graph"),
        }
        p.needs_lookup = false;
        p.lookup_at = None;
        Ok(())
    }

    /// Tells the platform the join link or registration id.
    async fn write_back(&mut self) -> Flow {
        let target = self.target();
        let value = self.progress.value_to_write_back(target).map(str::to_owned);
        let values = Writeback {
            meeting_id: &self.claimed.meeting_external_id,
            registrant_id: &self.claimed.external_id,
            join_web_url: self.progress.join_web_url.as_deref(),
            registration_id: self.progress.registrant_id.as_deref(),
        };
        crash_point("registrant-before-writeback");
        match self.ctx.source.write_back(&self.ctx.settings.writeback, values).await {
            Ok(()) => {
                self.progress.written_back_value = value;
                self.progress.written_back_now = true;
                self.done.written_back = true;
                ControlFlow::Continue(())
            }
            Err(e) if e.is_transient() => {
                let attempts = u32::try_from(self.progress.attempts).unwrap_or(0).saturating_add(1);
                self.progress.attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
                let s = &self.ctx.settings.sync;
                let base = Duration::from_millis(s.backoff_base_ms);
                let cap = Duration::from_millis(s.backoff_max_ms);
                let failure = Some((e.to_string(), None, FailureCategory::Writeback));
                ControlFlow::Break(match retry::next_attempt(attempts, s.max_attempts, base, cap, rand::random()) {
                    retry::Decision::RetryAfter(delay) => self.record(NextState::Retrying, delay, failure).await,
                    retry::Decision::Park => {
                        self.done.failed = true;
                        self.record(NextState::Failed, Duration::ZERO, failure).await
                    }
                })
            }
            Err(e) => {
                self.done.failed = true;
                let why = format!("{e}; fix it on the platform, then run `regsync retry --failed`");
                ControlFlow::Break(
                    self.record(NextState::Failed, Duration::ZERO, Some((why, None, FailureCategory::Writeback))).await,
                )
            }
        }
    }

    /// A Graph failure under the same error policy as meetings.
    async fn failed(&mut self, e: &graph::Error) -> Result<Done, SyncError> {
        let s = &self.ctx.settings.sync;
        let settle = if self.progress.needs_lookup { self.ctx.settings.graph.timeout() } else { Duration::ZERO };
        let policy = retry::Policy {
            max_attempts: s.max_attempts,
            base: Duration::from_millis(s.backoff_base_ms),
            cap: Duration::from_millis(s.backoff_max_ms),
            settle,
        };
        let before = u32::try_from(self.progress.attempts).unwrap_or(0);
        let (next, attempts) = retry::after_failure(e, before, policy, rand::random());
        self.progress.attempts = i32::try_from(attempts).unwrap_or(i32::MAX);
        let failure = Some((e.to_string(), e.http_status(), e.category()));
        match next {
            retry::AfterFailure::AuthPause => {
                self.record(NextState::Retrying, Duration::ZERO, failure).await?;
                Err(SyncError::Auth(e.to_string()))
            }
            retry::AfterFailure::Hold(wait) => {
                let held = self.ctx.throttle.throttled(&self.ctx.pool, wait).await?;
                self.ctx.metrics.throttled();
                self.record(NextState::Retrying, held, failure).await
            }
            retry::AfterFailure::Suspend => {
                let probe_after = self.ctx.settings.graph.suspended_probe_interval();
                let held = self.ctx.throttle.suspend(&self.ctx.pool, &e.to_string(), probe_after).await?;
                self.record(NextState::Retrying, held, failure).await
            }
            retry::AfterFailure::Park | retry::AfterFailure::Attempt(retry::Decision::Park) => {
                self.done.failed = true;
                self.record(NextState::Failed, Duration::ZERO, failure).await
            }
            retry::AfterFailure::Attempt(retry::Decision::RetryAfter(delay)) => {
                self.record(NextState::Retrying, delay, failure).await
            }
        }
    }

    /// Writes the outcome, fenced by the lease, with the audit rows.
    async fn record(
        &mut self,
        state: NextState,
        delay: Duration,
        failure: Option<(String, Option<u16>, FailureCategory)>,
    ) -> Result<Done, SyncError> {
        let p = &self.progress;
        let (last_error, last_http_status, error_category) = match failure {
            Some((why, status, category)) => (Some(why), status, Some(category)),
            None => (None, None, None),
        };
        let outcome = RegistrantOutcome {
            state,
            needs_lookup: p.needs_lookup,
            lookup_at: p.needs_lookup.then(|| p.lookup_at.as_ref().map(RegistrantsAt::key)).flatten(),
            enrolled_at: p.enrolled_at.as_ref().map(RegistrantsAt::key),
            registrant_id: p.registrant_id.clone(),
            join_web_url: p.join_web_url.clone(),
            written_back_value: p.written_back_now.then(|| p.written_back_value.clone()).flatten(),
            attempts: if state == NextState::Synced { 0 } else { p.attempts },
            next_attempt_in: delay,
            // A write still in progress at Graph may land until its request
            // times out: no lookup before then, whatever makes it due.
            lookup_settle: self.ctx.settings.graph.timeout(),
            last_error,
            last_http_status,
            error_category,
        };
        self.ctx.metrics.graph_calls(&self.calls);
        let applied = store::registrants::record_outcome(&self.ctx.pool, &self.claimed, &outcome, &self.calls).await?;
        if !applied {
            tracing::warn!(registrant = self.claimed.external_id, "outcome not recorded: the lease passed on");
            return Ok(Done::default());
        }
        Ok(self.done)
    }
}

/// Aborts the process here when the crash-matrix tests ask for it.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn crash_point(name: &str) {
    fail_point!(name, |_| std::process::abort());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_write_pace_lets_n_writes_through_per_30_seconds_counted_from_their_answers() {
        let pace = WritePace::new(15);
        let started = Instant::now();
        for _ in 0..15 {
            drop(pace.acquire().await);
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the first 15 go at once");

        tokio::time::advance(Duration::from_secs(5)).await;
        let in_flight = pace.acquire().await;
        assert_eq!(started.elapsed(), WRITE_WINDOW, "the 16th waits until the first answer is 30 s old");
        // Still unanswered, it holds its place: the next waits for the
        // second oldest answer, which is as old as the first.
        drop(in_flight);
        drop(pace.acquire().await);
        assert_eq!(started.elapsed(), WRITE_WINDOW);
        let mut late = 0;
        while tokio::time::timeout(Duration::from_secs(1), pace.acquire()).await.is_ok() {
            late += 1;
        }
        assert_eq!(late, 13, "15 in the window in all");
    }
}
