//! The write-back: the platform is told a registrant's join link (or
//! webinar registration id) once it is recorded, by the lease holder only.

use std::ops::ControlFlow;
use std::time::Duration;

use super::super::engine::{crash_point, Failure};
use super::work::{Flow, Work};
use super::Done;
use crate::domain::FailureCategory;
use crate::source::Writeback;
use crate::store::{self, NextState};

impl Work<'_> {
    /// Tells the platform the join link or registration id.
    pub(super) async fn write_back(&mut self) -> Flow {
        let target = self.target();
        let value = self.progress.value_to_write_back(target).map(str::to_owned);
        let values = Writeback {
            meeting_id: &self.claimed.meeting_external_id,
            registrant_id: &self.claimed.external_id,
            join_web_url: self.progress.join_web_url.as_deref(),
            registration_id: self.progress.registrant_id.as_deref(),
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
        match self.ctx.source.write_back(&self.ctx.settings.writeback, values).await {
            Ok(()) => {
                self.progress.written_back_value = value;
                self.progress.written_back_now = true;
                self.done.written_back = true;
                ControlFlow::Continue(())
            }
            Err(e) if e.is_transient() => {
                let why = e.to_string();
                ControlFlow::Break(
                    self.attempt(
                        Failure::new(why.clone(), FailureCategory::Writeback),
                        Failure::new(why, FailureCategory::Writeback),
                    )
                    .await,
                )
            }
            Err(e) => {
                self.done.failed = true;
                let why = format!("{e}; fix it on the platform, then run `regsync retry --failed`");
                ControlFlow::Break(
                    self.record(NextState::Failed, Duration::ZERO, Some(Failure::new(why, FailureCategory::Writeback)))
                        .await,
                )
            }
        }
    }
}
