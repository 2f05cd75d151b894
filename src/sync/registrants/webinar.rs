//! A webinar takes registrations only once published: registrations made
//! before are accepted and never arrive. Its status is read once per
//! [`WEBINAR_STATUS_TTL`] and shared by the registrants that need it.

use crate::sync::engine::Failure;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::work::{Flow, Work};
use crate::domain::FailureCategory;
use crate::domain::RowState;

/// How long a webinar's status is trusted before it is read again.
const WEBINAR_STATUS_TTL: Duration = Duration::from_secs(60);

/// A webinar's status as Graph last said, and when.
type Known = Option<(String, Instant)>;

/// Webinars' statuses, each behind its own lock: tasks that need the same
/// webinar's status wait for one read, and no other webinar waits for it.
#[derive(Default)]
pub struct WebinarStatuses(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Known>>>>);

impl WebinarStatuses {
    fn of(&self, webinar: &str) -> Arc<tokio::sync::Mutex<Known>> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(webinar.to_owned()).or_default().clone()
    }
}

impl Work<'_> {
    /// A webinar that is not published takes no registrations that arrive:
    /// its registrants fail with that reason.
    pub(super) async fn check_published(&mut self, webinar: &str) -> Flow {
        let entry = self.ctx.webinars.of(webinar);
        let mut known = entry.lock().await;
        let status = match known.as_ref().filter(|(_, at)| at.elapsed() < WEBINAR_STATUS_TTL) {
            Some((status, _)) => status.clone(),
            None => {
                // The documented order: the token, a throttle slot, then the gate.
                let permit = self.take_permit(self.meeting_organizer()).await?;
                let slot = self.ctx.throttle.slot().await;
                let Some((permit, probe)) = self.pass_gate(None, permit).await? else {
                    return ControlFlow::Continue(());
                };
                let result = self.ctx.graph.webinar_status(permit, webinar, &mut self.calls).await;
                self.ctx.throttle.answered(&self.ctx.pool, &result, probe, crate::sync::throttle::Call::Other).await;
                drop(slot);
                match result {
                    Ok(status) => {
                        *known = Some((status.clone(), Instant::now()));
                        status
                    }
                    Err(e) => return ControlFlow::Break(self.failed(&e).await),
                }
            }
        };
        drop(known);
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
            self.record(
                RowState::Failed,
                Duration::ZERO,
                Some(Failure::new(why, FailureCategory::WebinarNotPublished)),
            )
            .await,
        )
    }
}
