//! Registrants: each person the platform registered is enrolled at Teams
//! exactly once, removed once when cancelled, and their personal join link
//! (or webinar registration id) written back to the platform once — for
//! both targets, through lost answers and the webinar write limit.

use std::time::Duration;

use regsync::config::{Settings, Target};
use regsync_sim::{Fault, SimMeeting, SimRegistrant};

use crate::helpers::{meeting, spawn_app_with, TestApp};

/// Registrants listed per meeting, links written back to the platform.
pub fn with_registrants(s: &mut Settings) {
    s.registrants.enabled = true;
    s.writeback.url = "/meetings/{meeting_id}/registrants/{registrant_id}/join-link".into();
    s.writeback.body = r#"{"join_web_url": "{join_web_url}", "registration_id": "{registration_id}"}"#.into();
}

/// The webinar target: v1.0, each meeting a webinar.
pub fn webinars(s: &mut Settings) {
    with_registrants(s);
    s.graph.target = Target::VirtualEventWebinar;
    s.graph.base_url = s.graph.base_url.replace("/beta", "/v1.0");
}

pub async fn cycle(app: &TestApp) {
    app.tick().await;
    app.settle().await;
}

pub fn calls(app: &TestApp, call: &str) -> usize {
    app.sim.people_log().iter().filter(|r| r.call == call).count()
}

#[tokio::test]
async fn every_registrant_is_enrolled_once_its_link_written_back_once_and_a_second_cycle_calls_nothing() {
    let app = spawn_app_with(with_registrants).await;
    let meetings: Vec<SimMeeting> = (1..=3).map(|n| app.listed(meeting(n))).collect();
    let people = app.sim.seed_registrants(&meetings, 4);

    cycle(&app).await;

    for m in &meetings {
        let held = app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
        assert_eq!(held.len(), 4, "{}", m.id);
    }
    assert_eq!(calls(&app, "POST registrant"), 12, "one create per registrant");
    let write_backs = app.sim.write_backs();
    assert_eq!(write_backs.len(), 12, "one write-back per registrant");
    for p in &people {
        let m = meetings.iter().find(|m| m.id == p.meeting_id).unwrap();
        let held = app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
        let link = &held.iter().find(|r| r.id == p.id).expect("enrolled with the platform's id").join_web_url;
        let sent = write_backs.iter().find(|w| w.registrant_id == p.id).expect("written back");
        assert_eq!((sent.method.as_str(), sent.body["join_web_url"].as_str()), ("PUT", Some(link.as_str())));
    }
    let synced = app
        .scalar("SELECT count(*) FROM ops.registrant_status WHERE state = 'synced' AND written_back_at IS NOT NULL")
        .await;
    assert_eq!(synced, 12);

    let before = (app.sim.people_log().len(), app.sim.log().len(), app.sim.write_backs().len());
    cycle(&app).await;
    let after = (app.sim.people_log().len(), app.sim.log().len(), app.sim.write_backs().len());
    assert_eq!(after, before, "a steady cycle makes no Graph call and no write-back");
    let status = regsync::app::status(&app.settings).await.expect("status");
    assert!(status.contains("registrants by state:\n  synced     12"), "{status}");
}

#[tokio::test]
async fn a_cancelled_registrant_is_removed_once_and_a_cancelled_meetings_registrants_never_enrolled() {
    let app = spawn_app_with(with_registrants).await;
    let kept = app.listed(meeting(1));
    let mut cancelled_meeting = meeting(2);
    cancelled_meeting.status = "cancelled".into();
    let cancelled_meeting = app.listed(cancelled_meeting);
    let people = app.sim.seed_registrants(std::slice::from_ref(&kept), 2);
    app.sim.seed_registrants(std::slice::from_ref(&cancelled_meeting), 2);
    cycle(&app).await;

    let mut gone = people[0].clone();
    gone.status = "cancelled".into();
    app.sim.upsert_registrant(gone.clone());
    cycle(&app).await;
    cycle(&app).await;

    let held = app.sim.graph_registrants(&kept.organizer_id, &kept.online_meeting_id);
    assert_eq!(held.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [people[1].id.as_str()]);
    assert_eq!(calls(&app, "DELETE registrant"), 1, "removed once");
    assert_eq!(calls(&app, "POST registrant"), 2, "the cancelled meeting's registrants were never enrolled");
    let state: String = sqlx::query_scalar("SELECT state FROM ops.registrant_status WHERE external_id = $1")
        .bind(&gone.id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "synced");
}

#[tokio::test]
async fn a_lost_create_answer_ends_with_one_registrant_and_its_new_link_written_back() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        s.graph.timeout_ms = 2_000;
    })
    .await;
    let m = app.listed(meeting(1));
    app.tick().await; // the meeting registered, no registrant yet
    let person = SimRegistrant::new(&m.id, 1);
    app.sim.upsert_registrant(person.clone());
    // Graph enrols the registrant, and its answer (with the link) is lost.
    app.sim.fail_next(Some("POST"), Fault::LostResponse);

    cycle(&app).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    cycle(&app).await;

    let held = app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
    assert_eq!(held.len(), 1, "exactly one registrant");
    let log: Vec<(String, u16)> = app.sim.people_log().into_iter().map(|r| (r.call, r.status)).collect();
    assert_eq!(
        log,
        [
            ("POST registrant".to_owned(), 0),
            ("GET registrants".to_owned(), 200),
            ("DELETE registrant".to_owned(), 204),
            ("POST registrant".to_owned(), 200)
        ],
        "the link is gone for good: removed and enrolled again"
    );
    let write_backs = app.sim.write_backs();
    assert_eq!(write_backs.len(), 1);
    assert_eq!(write_backs[0].body["join_web_url"].as_str(), Some(held[0].join_web_url.as_str()));
}

/// A webinar target app whose platform lists each webinar's id where the
/// simulator keeps the online meeting's, each webinar published.
pub async fn webinar_app(change: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(|s| {
        webinars(s);
        s.source.fields.webinar_id = "/online_meeting_id".into();
        change(s);
    })
    .await;
    app
}

pub fn listed_webinar(app: &TestApp, n: usize, status: &str) -> SimMeeting {
    let m = app.listed(meeting(n));
    app.sim.put_webinar(&m.online_meeting_id, status);
    m
}

pub fn registrations(app: &TestApp, m: &SimMeeting) -> Vec<regsync_sim::WebinarRegistration> {
    app.sim.webinar(&m.online_meeting_id).map(|w| w.registrations).unwrap_or_default()
}

#[tokio::test]
async fn webinar_registrants_are_registered_once_their_ids_written_back_once_and_a_second_cycle_calls_nothing() {
    let app = webinar_app(|_| {}).await;
    let meetings: Vec<SimMeeting> = (1..=2).map(|n| listed_webinar(&app, n, "published")).collect();
    // Within the write limit; the first webinar's list is longer than a page.
    let mut people = app.sim.seed_registrants(&meetings[..1], 11);
    people.extend(app.sim.seed_registrants(&meetings[1..], 3));

    cycle(&app).await;

    assert_eq!(calls(&app, "POST registration"), 14, "one registration per registrant");
    assert!(app.sim.log().is_empty(), "no meeting-level registration call for webinars");
    let write_backs = app.sim.write_backs();
    assert_eq!(write_backs.len(), 14);
    for p in &people {
        let m = meetings.iter().find(|m| m.id == p.meeting_id).unwrap();
        let held: Vec<_> = registrations(&app, m).into_iter().filter(|r| r.external_id == p.id).collect();
        assert_eq!(held.len(), 1, "{}", p.id);
        assert_eq!(held[0].email, p.email);
        let sent = write_backs.iter().find(|w| w.registrant_id == p.id).expect("written back");
        assert_eq!(sent.body["registration_id"].as_str(), Some(held[0].id.as_str()), "{}", p.id);
    }

    let before = (app.sim.people_log().len(), app.sim.write_backs().len());
    cycle(&app).await;
    assert_eq!((app.sim.people_log().len(), app.sim.write_backs().len()), before, "a steady cycle calls nothing");
}

#[tokio::test]
async fn a_cancelled_webinar_registrant_is_cancelled_once() {
    let app = webinar_app(|_| {}).await;
    let m = listed_webinar(&app, 1, "published");
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    cycle(&app).await;

    let mut gone = people[0].clone();
    gone.status = "cancelled".into();
    app.sim.upsert_registrant(gone.clone());
    cycle(&app).await;
    cycle(&app).await;

    assert_eq!(calls(&app, "POST cancel"), 1);
    let held = registrations(&app, &m);
    let status = |id: &str| held.iter().find(|r| r.external_id == id).map(|r| r.status.clone());
    assert_eq!(status(&gone.id).as_deref(), Some("canceled"));
    assert_eq!(status(&people[1].id).as_deref(), Some("registered"));
}

#[tokio::test]
async fn a_lost_webinar_registration_answer_is_found_by_listing_and_never_sent_twice() {
    let app = webinar_app(|s| s.graph.timeout_ms = 2_000).await;
    let m = listed_webinar(&app, 1, "published");
    app.tick().await;
    let person = SimRegistrant::new(&m.id, 1);
    app.sim.upsert_registrant(person.clone());
    app.sim.fail_next(Some("POST"), Fault::LostResponse);

    cycle(&app).await;
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    cycle(&app).await;

    let held = registrations(&app, &m);
    assert_eq!(held.len(), 1, "exactly one registration");
    assert_eq!(calls(&app, "POST registration"), 1, "the unknown outcome was looked up, not sent again");
    let write_backs = app.sim.write_backs();
    assert_eq!(write_backs.len(), 1);
    assert_eq!(write_backs[0].body["registration_id"].as_str(), Some(held[0].id.as_str()));
}

#[tokio::test]
async fn a_draft_webinars_registrants_fail_with_the_reason_and_nothing_is_sent() {
    let app = webinar_app(|_| {}).await;
    let m = listed_webinar(&app, 1, "draft");
    app.sim.seed_registrants(std::slice::from_ref(&m), 3);

    cycle(&app).await;

    assert_eq!(calls(&app, "POST registration"), 0, "registrations to a draft never arrive: none is sent");
    assert_eq!(calls(&app, "GET webinar"), 1, "the status is read once");
    let failed: Vec<(String, String)> =
        sqlx::query_as("SELECT state, last_error FROM ops.registrant_status").fetch_all(&app.pool).await.unwrap();
    assert_eq!(failed.len(), 3);
    for (state, error) in failed {
        assert_eq!(state, "failed");
        assert!(error.contains("is draft, not published") && error.contains("regsync retry --failed"), "{error}");
    }
}

#[tokio::test]
async fn the_webinar_target_never_sends_more_than_15_writes_in_any_30_seconds() {
    let app = webinar_app(|_| {}).await;
    let m = listed_webinar(&app, 1, "published");
    app.sim.seed_registrants(std::slice::from_ref(&m), 17);

    app.tick().await;
    let settled = crate::helpers::eventually(Duration::from_secs(90), async || {
        app.reconcile().await;
        registrations(&app, &m).len() == 17
    })
    .await;

    assert!(settled, "every registrant registered in the end");
    let writes: Vec<_> = app
        .sim
        .people_log()
        .into_iter()
        .filter(|r| r.call == "POST registration" || r.call == "POST cancel")
        .map(|r| r.at)
        .collect();
    for (i, first) in writes.iter().enumerate() {
        let within = writes[i..].iter().take_while(|at| at.duration_since(*first) < Duration::from_secs(30)).count();
        assert!(within <= 15, "{within} writes within 30 s of write {i}");
    }
    assert!(
        app.sim.people_log().iter().all(|r| r.status != 429),
        "regsync paced itself: Graph never had to refuse a write"
    );
}

#[tokio::test]
async fn a_write_back_the_platform_refuses_fails_with_its_reason_and_a_failing_one_is_retried_until_acknowledged() {
    let app = spawn_app_with(with_registrants).await;
    let m = app.listed(meeting(1));
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    // The first write-back meets a 503, then a 422; the rest succeed.
    app.sim.fail_write_backs(&[503, 422]);

    cycle(&app).await;

    let rows: Vec<(String, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT external_id, state, last_error, error_category FROM ops.registrant_status ORDER BY external_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let failed: Vec<_> = rows.iter().filter(|r| r.1 == "failed").collect();
    assert_eq!(failed.len(), 1, "{rows:?}");
    let error = failed[0].2.clone().unwrap_or_default();
    assert!(error.contains("HTTP 422") && error.contains("regsync retry --failed"), "{error}");
    assert_eq!(failed[0].3.as_deref(), Some("writeback"));
    let acknowledged: Vec<_> = app.sim.write_backs().into_iter().filter(|w| w.status == 200).collect();
    assert_eq!(acknowledged.len(), 1, "the other was retried after the 503 and acknowledged once");
    assert_eq!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).len(), 2, "both stay enrolled");

    // Fixed on the platform: the retry writes back once more, nothing else.
    let reset = regsync::app::retry(&app.settings, &regsync::app::RetryWhat::Failed).await.expect("retry");
    cycle(&app).await;
    assert_eq!(reset, 1);
    assert_eq!(app.sim.write_backs().iter().filter(|w| w.status == 200).count(), 2);
    assert_eq!(calls(&app, "POST registrant"), people.len(), "no registrant enrolled twice");
}

#[tokio::test]
async fn a_flat_listing_of_all_registrants_maps_each_to_its_meeting() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        s.registrants.path = "/registrants".into();
    })
    .await;
    let meetings: Vec<SimMeeting> = (1..=3).map(|n| app.listed(meeting(n))).collect();
    app.sim.seed_registrants(&meetings, 2);

    cycle(&app).await;

    for m in &meetings {
        assert_eq!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).len(), 2, "{}", m.id);
    }
}

#[tokio::test]
async fn a_registrant_listed_twice_is_enrolled_once_and_the_repeat_rejected_with_the_reason() {
    let app = spawn_app_with(with_registrants).await;
    let m = app.listed(meeting(1));
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    app.sim.list_registrant_again(people[0].clone());

    let report = app.tick().await;
    app.settle().await;

    assert_eq!(report.error, None, "the cycle ran");
    assert_eq!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).len(), 2);
    let reason: String =
        sqlx::query_scalar("SELECT reason FROM ops.rejected_items").fetch_one(&app.pool).await.unwrap();
    assert!(reason.contains("appears more than once"), "{reason}");
}
