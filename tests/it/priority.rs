//! The write queue's order: cancellations first, then the events starting
//! soonest (`source.fields.starts_at`), then the rest; for meetings and for
//! registrants (whose writes spend the webinar budget).

use std::time::Duration;

use regsync::store;
use regsync_sim::{SimMeeting, SimRegistrant};

use crate::helpers::{meeting, spawn_app_with, TestApp};
use crate::registrants::with_registrants;

/// Meetings 1 to 4 listed with these starts, each with a registrant;
/// meeting 9 synced and then cancelled; meeting 5 synced with a registrant
/// who then cancels.
async fn queue() -> TestApp {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        s.source.fields.starts_at = "/starts_at".into();
    })
    .await;
    let cancelled = app.listed(meeting(9));
    let kept = app.listed(meeting(5));
    app.sim.upsert_registrant(SimRegistrant::new(&kept.id, 1));
    app.tick().await;
    app.settle().await;

    let starting = |n, at: Option<&str>| SimMeeting { starts_at: at.map(Into::into), ..meeting(n) };
    for (n, at) in [(1, Some("2027-03-01T09:00:00Z")), (2, None), (3, Some("2026-12-24T09:00:00Z"))] {
        app.listed(starting(n, at));
    }
    app.listed(starting(4, Some("2027-01-15T09:00:00+01:00")));
    for n in 1..=4 {
        app.sim.upsert_registrant(SimRegistrant::new(&format!("evt-{n}"), 1));
    }
    app.sim.upsert_registrant(SimRegistrant { status: "cancelled".into(), ..SimRegistrant::new(&kept.id, 1) });
    app.sim.upsert_meeting(SimMeeting { status: "cancelled".into(), ..cancelled });
    regsync::sync::ingest::poll(&app.ctx).await.expect("meetings listed");
    regsync::sync::registrants::poll(&app.ctx, 0).await.expect("registrants listed");
    app
}

const TTL: Duration = Duration::from_secs(60);

#[tokio::test]
async fn cancellations_go_first_then_the_events_starting_soonest_then_the_rest() {
    let app = queue().await;

    let mut meetings = Vec::new();
    while let Some(claimed) = store::claims::claim_due(&app.pool, 1, TTL, 8, uuid::Uuid::new_v4()).await.unwrap().pop()
    {
        meetings.push(claimed.external_id.0);
    }
    assert_eq!(meetings, ["evt-9", "evt-3", "evt-4", "evt-1", "evt-2"]);

    let round = chrono::Utc::now() + chrono::Duration::seconds(1);
    let mut people = Vec::new();
    while let Some(claimed) =
        store::registrants::claim_due(&app.pool, 1, TTL, 8, uuid::Uuid::new_v4(), round).await.unwrap().pop()
    {
        people.push(claimed.meeting_external_id);
    }
    assert_eq!(people, ["evt-5", "evt-3", "evt-4", "evt-1", "evt-2"], "the cancelled registrant first");
}
