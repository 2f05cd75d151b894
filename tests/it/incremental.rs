//! Incremental listings (`source.changed_since_param`): a poll asks only for
//! what changed since the watermark less the overlap, never deregisters what
//! it does not see, and a full listing on its own schedule still does.

use chrono::{DateTime, Utc};
use regsync::config::{OnMissing, Settings};
use regsync_sim::SimRegistrant;

use crate::helpers::{meeting, spawn_app_with, TestApp};
use crate::registrants::with_registrants;

/// Incremental listings with a five-minute overlap; a full listing only when
/// the test makes one due (the schedule fires on 29 February).
fn incremental(s: &mut Settings) {
    s.source.changed_since_param = "changed_since".into();
    s.source.changed_since_overlap_secs = 300;
    s.sync.full_listing_schedule = "0 0 3 29 2 *".into();
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a time")
}

/// The `changed_since` of the platform's last filtered request for `what`.
fn last_asked(app: &TestApp, what: &str) -> Option<DateTime<Utc>> {
    app.sim.changed_since_asked().into_iter().filter(|(kind, _)| *kind == what).map(|(_, since)| since).next_back()
}

/// The full-listing schedule fires before the next poll.
async fn make_full_listing_due(app: &TestApp) {
    sqlx::query("UPDATE listing_watermarks SET full_listed_at = full_listed_at - interval '5 years'")
        .execute(&app.pool)
        .await
        .expect("full listing due");
}

#[tokio::test]
async fn an_incremental_listing_asks_for_changes_since_the_watermark_and_its_overlap_catches_a_change_committed_late() {
    let app = spawn_app_with(incremental).await;
    for i in 1..=3 {
        let mut m = meeting(i);
        m.updated_at = "2026-12-06T10:00:00Z".into();
        app.sim.upsert_meeting(m);
    }
    let first = app.tick().await;
    assert!(first.poll.full, "no watermark yet: the first listing is whole");
    assert_eq!(last_asked(&app, "meetings"), None);
    app.settle().await;

    // Committed after the first listing, stamped before its newest item:
    // one within the overlap, one beyond it. And a cancellation.
    let mut late = meeting(4);
    late.updated_at = "2026-12-06T09:58:00Z".into();
    app.sim.upsert_meeting(late);
    let mut too_late = meeting(5);
    too_late.updated_at = "2026-12-06T09:00:00Z".into();
    app.sim.upsert_meeting(too_late);
    let mut cancelled = meeting(1);
    cancelled.status = "cancelled".into();
    cancelled.updated_at = "2026-12-06T10:02:00Z".into();
    app.sim.upsert_meeting(cancelled);

    let second = app.tick().await;
    assert!(!second.poll.full);
    assert_eq!(last_asked(&app, "meetings"), Some(at("2026-12-06T09:55:00Z")), "the newest time less the overlap");
    assert_eq!(second.poll.seen, 4, "only what changed since: meetings 1 to 4, not 5");
    app.settle().await;
    assert_eq!(app.status("evt-4").await.state, "synced", "the late commit within the overlap is registered");
    assert_eq!(app.status("evt-1").await.desired, "unregistered");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE external_id = 'evt-5'").await, 0);

    app.tick().await;
    assert_eq!(last_asked(&app, "meetings"), Some(at("2026-12-06T09:57:00Z")), "the watermark moved to 10:02");

    // A full listing finds what committed later than the overlap covers.
    make_full_listing_due(&app).await;
    let full = app.tick().await;
    assert!(full.poll.full);
    app.settle().await;
    assert_eq!(app.status("evt-5").await.state, "synced");
    let next = app.tick().await;
    assert!(!next.poll.full, "the schedule counts from the full listing just made");
}

#[tokio::test]
async fn an_incremental_listing_never_deregisters_a_vanished_meeting_and_the_full_listing_does() {
    let app = spawn_app_with(|s| {
        incremental(s);
        s.sync.on_missing = OnMissing::Unregister;
    })
    .await;
    let kept: Vec<_> = (1..=3).map(|i| app.listed(meeting(i))).collect();
    app.tick().await;
    app.settle().await;
    app.sim.remove_meeting("evt-2");

    let incremental = app.tick().await;
    assert!(!incremental.poll.full);
    app.settle().await;
    assert_eq!(app.status("evt-2").await.desired, "registered", "not seen is not missing in an incremental listing");
    assert_eq!(app.calls_for(&kept[1]), ["POST 201"]);

    make_full_listing_due(&app).await;
    assert!(app.tick().await.poll.full);
    app.settle().await;
    assert_eq!(app.status("evt-2").await.desired, "unregistered");
    assert_eq!(app.calls_for(&kept[1]), ["POST 201", "DELETE 204"], "the vanished meeting is deregistered once");
    assert_eq!(app.calls_for(&kept[0]), ["POST 201"], "the others are untouched");
}

#[tokio::test]
async fn each_meetings_registrant_listing_resumes_from_its_own_watermark_and_never_cancels_who_it_does_not_see() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        incremental(s);
        s.registrants.changed_since_param = "changed_since".into();
        s.sync.on_missing = OnMissing::Unregister;
    })
    .await;
    let first = app.listed(meeting(1));
    let people = app.sim.seed_registrants(std::slice::from_ref(&first), 2);
    app.tick().await;
    app.settle().await;
    assert_eq!(last_asked(&app, "registrants"), None, "a meeting's first registrant listing is whole");

    // A registrant who joins later, one who leaves the platform's list, and
    // a second meeting listed for the first time.
    let joined = SimRegistrant { updated_at: "2026-12-06T10:00:00Z".into(), ..SimRegistrant::new(&first.id, 3) };
    app.sim.upsert_registrant(joined.clone());
    app.sim.remove_registrant(&first.id, &people[0].id);
    let second = app.listed(meeting(2));
    app.sim.seed_registrants(std::slice::from_ref(&second), 1);
    app.tick().await;
    app.settle().await;

    let asked: Vec<_> = app.sim.changed_since_asked().into_iter().filter(|(kind, _)| *kind == "registrants").collect();
    assert_eq!(asked.len(), 1, "only the first meeting's listing is filtered: {asked:?}");
    assert_eq!(asked[0].1, at("2026-11-28T09:55:00Z"), "its newest registrant's time less the overlap");
    let state = |id: String| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT state || '/' || desired FROM registrants WHERE external_id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("registrant row")
        }
    };
    assert_eq!(state(joined.id.clone()).await, "synced/registered");
    assert_eq!(state(format!("{}-p001", second.id)).await, "synced/registered", "the new meeting listed whole");
    assert_eq!(state(people[0].id.clone()).await, "synced/registered", "not cancelled by an incremental listing");
    assert_eq!(app.sim.graph_registrants(&first.organizer_id, &first.online_meeting_id).len(), 3);
}
