//! The write-backs: the platform is told a registrant's join link (or
//! webinar registration id) once it is recorded, and a change of their
//! status at Teams (cancelled with their meeting, registered again), by the
//! lease holder only, each once.

use std::ops::ControlFlow;
use std::time::Duration;

use super::super::engine::{crash_point, Failure};
use super::work::{Flow, Work};
use super::Done;
use crate::config::WritebackSettings;
use crate::domain::FailureCategory;
use crate::domain::RowState;
use crate::source::Writeback;
use crate::store::{self};

impl Work<'_> {
    /// Tells the platform the join link or registration id.
    pub(super) async fn write_back(&mut self) -> Flow {
        let value = self.progress.value_to_write_back(self.target()).map(str::to_owned);
        let settings = self.ctx.settings.writeback.clone();
        self.tell_platform(&settings, None).await?;
        self.progress.written_back_value = value;
        self.progress.written_back_now = true;
        ControlFlow::Continue(())
    }

    /// Tells the platform the registrant's status at Teams changed.
    pub(super) async fn write_status(&mut self, status: &'static str) -> Flow {
        let settings = self.ctx.settings.writeback.for_status();
        self.tell_platform(&settings, Some(status)).await?;
        self.progress.status_written_back = Some(status.to_owned());
        self.progress.status_written_back_now = true;
        ControlFlow::Continue(())
    }

    /// One call to the platform as `settings` says, while the lease is this
    /// worker's; a refusal fails the registrant, a failure is an attempt.
    async fn tell_platform(&mut self, settings: &WritebackSettings, status: Option<&str>) -> Flow {
        let values = Writeback {
            meeting_id: &self.claimed.meeting_external_id,
            registrant_id: &self.claimed.external_id,
            join_web_url: self.progress.join_web_url.as_deref(),
            registration_id: self.progress.registrant_id.as_deref(),
            status,
            extra: &[],
        };
        crash_point("registrant-before-writeback");
        // Only the lease holder tells the platform: one that stalled past its
        // lease leaves it to the new owner.
        let ttl = self.ctx.settings.sync.lease_ttl();
        match store::registrants::renew_lease(&self.ctx.pool, &self.claimed, ttl).await {
            Ok(true) => {}
            Ok(false) => return ControlFlow::Break(Ok(Done::default())),
            Err(e) => return ControlFlow::Break(Err(e.into())),
        }
        match self.ctx.source.write_back(settings, values).await {
            Ok(()) => {
                self.done.written_back = true;
                ControlFlow::Continue(())
            }
            Err(e) if e.is_transient() => {
                let failure = Failure::new(e.to_string(), FailureCategory::Writeback);
                ControlFlow::Break(self.attempt(failure.clone(), failure).await)
            }
            Err(e) => {
                self.done.failed = true;
                let why = format!("{e}; fix it on the platform, then run `regsync retry --failed`");
                let failure = Some(Failure::new(why, FailureCategory::Writeback));
                ControlFlow::Break(self.record(RowState::Failed, Duration::ZERO, failure).await)
            }
        }
    }
}
