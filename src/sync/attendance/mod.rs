//! Attendance back to the platform. Once an event has ended
//! (`source.fields.ends_at`) plus `attendance.delay_secs`, one replica reads
//! its attendance reports, matches each record to a registrant
//! (`matching`), and stores every registrant's figures; then each figure
//! that changed is written back once (`attendance.writeback`), a 5xx
//! retried, a 4xx kept as the reason until the figures change. An event is
//! read again on a lengthening interval (from `attendance.reread_secs`, half
//! the time since its end, up to 6 hours) until `attendance.give_up_after_secs`
//! after its end — reports list only the 50 most recent, so they are read
//! while they are recent.

mod matching;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::retry::backoff;
use super::sign_ins::TokenError;
use super::{Ctx, SyncError};
use crate::domain::{Location, OnlineMeetingId, OrganizerId, VirtualEvent};
use crate::graph::AttendanceAt;
use crate::source::Writeback;
use crate::store::{self, attendance::Sent};

pub use matching::match_attendees;

/// The longest the deployment waits between looks for events due a read.
const PERIOD: Duration = Duration::from_secs(30);
/// Events read per run.
const EVENTS_PER_RUN: i64 = 50;
/// Write-backs claimed per batch, and how long a claim holds.
const WRITEBACKS_PER_BATCH: i64 = 100;
const WRITEBACK_LEASE: Duration = Duration::from_secs(120);
/// The longest wait before an event is read again (the shortest is
/// `attendance.reread_secs`).
const REREAD_MAX: Duration = Duration::from_secs(6 * 3600);

/// What one run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttendanceRun {
    /// Events whose reports were read.
    pub read: u64,
    /// Events with no report yet.
    pub not_ready: u64,
    /// Events that could not be read.
    pub failed: u64,
    /// Figures the platform acknowledged.
    pub written_back: u64,
}

/// Runs when the deployment's period has come (one replica per period).
///
/// # Errors
/// The database failed.
pub async fn when_due(ctx: &Arc<Ctx>) -> Result<Option<AttendanceRun>, SyncError> {
    let period = PERIOD.min(ctx.settings.attendance.reread());
    if !ctx.settings.attendance.enabled || !store::runs::claim_job(&ctx.pool, "attendance", period).await? {
        return Ok(None);
    }
    run(ctx).await.map(Some)
}

/// Reads the events due a read, then writes back every changed figure.
///
/// # Errors
/// The database failed.
pub async fn run(ctx: &Arc<Ctx>) -> Result<AttendanceRun, SyncError> {
    let settings = &ctx.settings.attendance;
    let reread = settings.reread();
    let mut report = AttendanceRun::default();
    let due =
        store::attendance::due_events(&ctx.pool, settings.delay(), settings.give_up_after(), EVENTS_PER_RUN).await?;
    for event in due {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        // Reports change as late peers report: read again, less often as
        // the end recedes.
        let since_end = (Utc::now() - event.ends_at).to_std().unwrap_or_default();
        let again = (since_end / 2).clamp(reread, REREAD_MAX.max(reread));
        match read_event(ctx, &event).await {
            Ok(Some(records)) => {
                let registrants = store::attendance::registrants_of(&ctx.pool, &event.meeting_external_id).await?;
                let read = match_attendees(&registrants, &records);
                store::attendance::record_read(&ctx.pool, &event.meeting_external_id, Some(&read), again, None).await?;
                report.read += 1;
            }
            Ok(None) => {
                let soon = reread.min(again);
                store::attendance::record_read(&ctx.pool, &event.meeting_external_id, None, soon, None).await?;
                report.not_ready += 1;
            }
            Err(why) => {
                tracing::warn!(meeting = event.meeting_external_id, error = why, "cannot read attendance");
                let meeting = &event.meeting_external_id;
                store::attendance::record_read(&ctx.pool, meeting, None, reread, Some(&why)).await?;
                report.failed += 1;
            }
        }
    }
    report.written_back = write_back(ctx).await?;
    if report != AttendanceRun::default() {
        tracing::info!(?report, "attendance");
    }
    Ok(report)
}

/// The event's attendance records, `None` while no report is ready.
async fn read_event(
    ctx: &Arc<Ctx>,
    event: &store::attendance::EndedEvent,
) -> Result<Option<Vec<crate::domain::Attendee>>, String> {
    let organizer = OrganizerId(event.organizer_id.clone().unwrap_or_default());
    let id = event.online_meeting_id.clone().unwrap_or_default();
    let at = match ctx.settings.graph.target.event_kind() {
        Some(kind) => AttendanceAt::Event(VirtualEvent { kind, id }),
        None => AttendanceAt::Meeting(Location { organizer: organizer.clone(), meeting: OnlineMeetingId(id) }),
    };
    let read =
        ctx.read_beside(&organizer, |permit| async move { ctx.graph.attendance(permit, &at, &mut Vec::new()).await });
    read.await.map_err(|e| match e {
        TokenError::Graph(e @ crate::graph::Error::Rejected { status: 403, .. }) => format!(
            "{e} Reading attendance needs the application permission OnlineMeetingArtifact.Read.All (admin consent) \
             and the application access policy granted to the organizer"
        ),
        e => e.to_string(),
    })
}

/// Writes back every changed figure, batch by batch. How many were
/// acknowledged.
async fn write_back(ctx: &Arc<Ctx>) -> Result<u64, SyncError> {
    let settings = ctx.settings.attendance.writeback.to_writeback();
    if settings.url.is_empty() {
        return Ok(0);
    }
    let mut acknowledged = 0;
    loop {
        let due = store::attendance::claim_writebacks(&ctx.pool, WRITEBACKS_PER_BATCH, WRITEBACK_LEASE).await?;
        if due.is_empty() || ctx.shutdown.is_cancelled() {
            return Ok(acknowledged);
        }
        for row in &due {
            let a = &row.attendance;
            let time = |t: Option<chrono::DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
            let extra = [
                ("{email}", row.email.clone().unwrap_or_default()),
                ("{attended}", a.attended.to_string()),
                ("{total_seconds}", a.total_seconds.to_string()),
                ("{first_join}", time(a.first_join)),
                ("{last_leave}", time(a.last_leave)),
            ];
            let values = Writeback {
                meeting_id: &row.meeting_external_id,
                registrant_id: &row.registrant_external_id,
                join_web_url: None,
                registration_id: None,
                status: None,
                extra: &extra,
            };
            crate::sync::engine::crash_point("attendance-before-writeback");
            let answer = ctx.source.write_back(&settings, values).await;
            crate::sync::engine::crash_point("attendance-after-writeback");
            let sent = match answer {
                Ok(()) => {
                    acknowledged += 1;
                    Sent::Acknowledged
                }
                Err(e) if e.is_transient() => {
                    let policy = super::retry::Policy::new(&ctx.settings.sync, Duration::ZERO);
                    let attempt = u32::try_from(row.attempts).unwrap_or_default().saturating_add(1);
                    Sent::Failed(e.to_string(), backoff(attempt, policy.base, policy.cap, rand::random()))
                }
                Err(e) => {
                    Sent::Refused(format!("{e}; fix it on the platform: the figures are sent again when they change"))
                }
            };
            store::attendance::record_writeback(&ctx.pool, row, &sent).await?;
        }
    }
}
