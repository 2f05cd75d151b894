//! What a registration on a webinar or town hall needs to know of the
//! event: that it is published (registrations made before are accepted and
//! never arrive), and — when `registrants.answers` maps any — its
//! registration questions. Read once per [`EVENT_FACTS_TTL`] and shared by
//! the registrants that need them.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::questions::answers;
use super::work::Work;
use crate::domain::{FailureCategory, QuestionAnswer, RegistrationQuestion, RowState, VirtualEvent};
use crate::sync::engine::Failure;
use crate::sync::throttle::Call;

/// How long what Graph said of an event is trusted before it is read again.
const EVENT_FACTS_TTL: Duration = Duration::from_secs(60);

/// What Graph said of one event.
#[derive(Clone)]
struct Facts {
    status: String,
    /// `None` when no answers are mapped: not read.
    questions: Option<Vec<RegistrationQuestion>>,
    read_at: Instant,
}

/// A read about an event.
#[derive(Clone, Copy)]
enum Ask {
    Status,
    Questions,
}

/// Its answer.
enum Read {
    Status(String),
    Questions(Vec<RegistrationQuestion>),
}

/// Events' facts, each behind its own lock: tasks that need the same
/// event's wait for one read, and no other event waits for it.
#[derive(Default)]
pub struct EventFacts(Mutex<HashMap<VirtualEvent, Arc<tokio::sync::Mutex<Option<Facts>>>>>);

impl EventFacts {
    fn of(&self, event: &VirtualEvent) -> Arc<tokio::sync::Mutex<Option<Facts>>> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(event.clone()).or_default().clone()
    }
}

impl Work<'_> {
    /// The answers to send with a registration on `event`; a registrant
    /// the event cannot take (not published, a required answer missing)
    /// fails with the reason.
    pub(super) async fn prepare_registration(
        &mut self,
        event: &VirtualEvent,
    ) -> ControlFlow<Result<super::Done, crate::sync::SyncError>, Vec<QuestionAnswer>> {
        let entry = self.ctx.event_facts.of(event);
        let mut known = entry.lock().await;
        let facts = match known.as_ref().filter(|f| f.read_at.elapsed() < EVENT_FACTS_TTL) {
            Some(facts) => facts.clone(),
            None => {
                let facts = self.read_facts(event).await?;
                *known = Some(facts.clone());
                facts
            }
        };
        drop(known);
        if !facts.status.eq_ignore_ascii_case("published") {
            let why = format!(
                "{event} is {}, not published: registrations made before it is published never arrive; \
                 publish it in Teams, then run `regsync retry --failed`",
                if facts.status.is_empty() { "of no status" } else { &facts.status }
            );
            return ControlFlow::Break(self.fail(why, FailureCategory::WebinarNotPublished).await);
        }
        match answers(facts.questions.as_deref().unwrap_or_default(), &self.claimed.answers) {
            Ok(answers) => ControlFlow::Continue(answers),
            Err(why) => ControlFlow::Break(self.fail(format!("{event}: {why}"), FailureCategory::PlatformData).await),
        }
    }

    /// The event's status, and its questions where answers are mapped.
    async fn read_facts(
        &mut self,
        event: &VirtualEvent,
    ) -> ControlFlow<Result<super::Done, crate::sync::SyncError>, Facts> {
        let mut facts = Facts { status: String::new(), questions: None, read_at: Instant::now() };
        let mut asks = vec![Ask::Status];
        if !self.ctx.settings.registrants.answers.is_empty() {
            asks.push(Ask::Questions);
        }
        for ask in asks {
            match self.read_event(event, ask).await? {
                Read::Status(status) => facts.status = status,
                Read::Questions(questions) => facts.questions = Some(questions),
            }
        }
        ControlFlow::Continue(facts)
    }

    /// One read of `what` about the event, in the documented order: the
    /// token, a throttle slot, then the gate.
    async fn read_event(
        &mut self,
        event: &VirtualEvent,
        ask: Ask,
    ) -> ControlFlow<Result<super::Done, crate::sync::SyncError>, Read> {
        let permit = self.take_permit(self.meeting_organizer()).await?;
        let slot = self.ctx.throttle.slot().await;
        let Some((permit, probe)) = self.pass_gate(None, permit).await? else {
            return ControlFlow::Break(Ok(super::Done::default()));
        };
        let (graph, calls) = (&self.ctx.graph, &mut self.calls);
        let result = match ask {
            Ask::Status => graph.event_status(permit, event, calls).await.map(Read::Status),
            Ask::Questions => graph.registration_questions(permit, event, calls).await.map(Read::Questions),
        };
        self.ctx.throttle.answered(&self.ctx.pool, &result, probe, Call::Other).await;
        drop(slot);
        match result {
            Ok(read) => ControlFlow::Continue(read),
            Err(e) => ControlFlow::Break(self.failed(&e).await),
        }
    }

    /// Parks the registrant as failed with `why`.
    async fn fail(&mut self, why: String, category: FailureCategory) -> Result<super::Done, crate::sync::SyncError> {
        self.done.failed = true;
        self.record(RowState::Failed, Duration::ZERO, Some(Failure::new(why, category))).await
    }
}
