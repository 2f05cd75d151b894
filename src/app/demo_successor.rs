//! The demo's second act, with `--registrants`: the v1.0 successor. A few
//! webinars that ended an hour ago, on a simulator and a database of their
//! own; their people are registered, a cancellation and an approval made
//! in Teams flow back to the platform, and the attendance reports —
//! with a walk-in no one registered — are written back per person.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use regsync_sim::{RegistrationConfig, Sim, SimAttendee, SimMeeting, SimRegistrant};
use tokio_util::sync::CancellationToken;

use super::demo::simulator_settings;
use super::{connect_and_migrate, context};
use crate::config::Target;
use crate::store::{self, demo::SuccessorFigures};
use crate::sync;

/// Webinars in the second act.
const WEBINARS: usize = 3;
/// People per webinar: the act stays within one window of Graph's 15
/// virtual-event writes per 30 s.
const PEOPLE_PER_WEBINAR: usize = 4;

/// Runs the second act against database `url`; its figures.
///
/// # Errors
/// The simulator, the database or the sync failed.
pub async fn act(url: &str) -> anyhow::Result<SuccessorFigures> {
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.context("cannot start the simulator")?;
    let ended = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let webinars: Vec<SimMeeting> =
        (1..=WEBINARS).map(|n| SimMeeting { ends_at: Some(ended.clone()), ..SimMeeting::generated(n) }).collect();
    for (n, w) in webinars.iter().enumerate() {
        sim.upsert_meeting(w.clone());
        sim.put_webinar(&w.online_meeting_id, "published");
        // The last webinar's organizer approves each registration.
        let approval = n + 1 == WEBINARS;
        sim.configure_registration(
            &w.online_meeting_id,
            RegistrationConfig { capacity: 0, waitlist: false, manual_approval: approval },
        );
        for p in 1..=PEOPLE_PER_WEBINAR {
            sim.upsert_registrant(SimRegistrant::new(&w.id, p));
        }
    }
    let mut settings = simulator_settings(&sim, url);
    settings.graph.target = Target::VirtualEventWebinar;
    settings.graph.base_url = settings.graph.base_url.replace("/beta", "/v1.0");
    settings.source.fields.webinar_id = "/online_meeting_id".into();
    settings.source.fields.ends_at = "/ends_at".into();
    settings.registrants.enabled = true;
    settings.registrants.path = "/registrants".into();
    settings.registrants.status_readback_secs = 60;
    settings.writeback.url = "/meetings/{meeting_id}/registrants/{registrant_id}/join-link".into();
    settings.writeback.body = r#"{"registration_id": "{registration_id}"}"#.into();
    settings.writeback.status_url = "/meetings/{meeting_id}/registrants/{registrant_id}/status".into();
    settings.attendance.enabled = true;
    settings.attendance.delay_secs = 0;
    settings.attendance.writeback.url = "/meetings/{meeting_id}/registrants/{registrant_id}/attendance".into();
    let pool = connect_and_migrate(&settings).await?;
    let ctx = context(Arc::new(settings), pool.clone(), Arc::default(), CancellationToken::new())?;

    sync::tick(&ctx).await?;
    settle(&ctx).await?;
    // Teams holds the gated webinar's people for approval: the platform hears.
    sync::readback::read_back(&ctx).await?;
    settle(&ctx).await?;
    // In Teams: one person cancels; the organizer approves another.
    let first = &webinars[0];
    sim.change_registration_in_teams(&first.online_meeting_id, &SimRegistrant::new(&first.id, 1).id, "canceled");
    let gated = &webinars[WEBINARS - 1];
    sim.change_registration_in_teams(&gated.online_meeting_id, &SimRegistrant::new(&gated.id, 1).id, "registered");
    sync::readback::read_back(&ctx).await?;
    settle(&ctx).await?;
    // The reports: most came, some for longer, and a walk-in.
    for w in &webinars {
        let mut records: Vec<SimAttendee> = (2..=PEOPLE_PER_WEBINAR)
            .map(|p| {
                let person = SimRegistrant::new(&w.id, p);
                let joined = (chrono::Utc::now() - chrono::Duration::minutes(120)).to_rfc3339();
                let left = (chrono::Utc::now() - chrono::Duration::minutes(70)).to_rfc3339();
                let secs = 600 * u64::try_from(p).unwrap_or(1);
                SimAttendee { email: person.email, intervals: vec![(joined, left, secs)], ..SimAttendee::default() }
            })
            .collect();
        records.push(SimAttendee {
            email: format!("walk-in.{}@guest.example", w.id),
            display_name: "A guest".into(),
            intervals: vec![(ended.clone(), ended.clone(), 300)],
            ..SimAttendee::default()
        });
        sim.put_attendance_report(&w.online_meeting_id, Duration::ZERO, records);
    }
    sync::attendance::run(&ctx).await?;
    Ok(store::demo::successor_figures(&pool).await?)
}

/// Reconciles until nothing is due (or a minute passed).
async fn settle(ctx: &Arc<sync::Ctx>) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store::registrants::open_count(&ctx.pool).await? > 0 && tokio::time::Instant::now() < deadline {
        sync::reconcile_due(ctx).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
