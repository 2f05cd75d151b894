//! Attendance back to the platform: after an event ends and its report is
//! ready, every registrant's attendance is written back once — attendees
//! with their figures, the absent with none — again only when the report
//! changes, a 5xx retried; attendees who match no registrant are reported.
//! For webinars (matched by registration id, or e-mail) and for online
//! meetings (beta: matched by e-mail).

use std::time::Duration;

use regsync::config::Settings;
use regsync_sim::{SimAttendee, SimMeeting, SimRegistrant};
use serde_json::json;

use crate::helpers::{meeting, spawn_app_with, TestApp};
use crate::registrants::{cycle, webinar_app, with_registrants};

fn attendance(s: &mut Settings) {
    s.source.fields.ends_at = "/ends_at".into();
    s.attendance.enabled = true;
    s.attendance.writeback.url = "/meetings/{meeting_id}/registrants/{registrant_id}/attendance".into();
    s.attendance.writeback.body = r#"{"attended": {attended}, "seconds": {total_seconds},
        "first_join": "{first_join}", "last_leave": "{last_leave}", "email": "{email}"}"#
        .into();
}

/// A meeting that ended an hour ago.
fn ended(n: usize) -> SimMeeting {
    let end = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    SimMeeting { ends_at: Some(end), ..meeting(n) }
}

/// `(registrant, attended, seconds)` of each attendance write-back, sorted.
fn written(app: &TestApp) -> Vec<(String, bool, i64)> {
    let mut sent: Vec<_> = app
        .sim
        .write_backs()
        .into_iter()
        .filter(|w| w.body.get("attended").is_some() && w.status < 300)
        .map(|w| (w.registrant_id, w.body["attended"].as_bool().unwrap(), w.body["seconds"].as_i64().unwrap()))
        .collect();
    sent.sort();
    sent
}

/// One attendance run, as if its next read had come.
async fn run(app: &TestApp) -> regsync::sync::attendance::AttendanceRun {
    sqlx::query("UPDATE attendance_reads SET next_read_at = now()").execute(&app.pool).await.unwrap();
    sqlx::query("UPDATE attendance SET next_attempt_at = now()").execute(&app.pool).await.unwrap();
    regsync::sync::attendance::run(&app.ctx).await.expect("attendance runs")
}

fn interval(minutes: i64, secs: u64) -> (String, String, u64) {
    let start = chrono::Utc::now() - chrono::Duration::minutes(90 - minutes);
    let end = start + chrono::Duration::seconds(i64::try_from(secs).unwrap());
    (start.to_rfc3339(), end.to_rfc3339(), secs)
}

#[tokio::test]
async fn a_webinars_attendance_is_written_back_once_per_registrant_again_only_when_the_report_changes() {
    let app = webinar_app(attendance).await;
    let m = app.listed(ended(1));
    app.sim.put_webinar(&m.online_meeting_id, "published");
    written_back_once_again_only_when_the_report_changes(app, m).await;
}

#[tokio::test]
async fn a_town_halls_attendance_is_written_back_once_per_registrant_again_only_when_the_report_changes() {
    let app = spawn_app_with(|s| {
        crate::townhalls::townhalls(s);
        attendance(s);
    })
    .await;
    let m = app.listed(ended(1));
    app.sim.put_townhall(&m.online_meeting_id, "published");
    written_back_once_again_only_when_the_report_changes(app, m).await;
}

async fn written_back_once_again_only_when_the_report_changes(app: TestApp, m: SimMeeting) {
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 3);
    cycle(&app).await;
    let first = app.sim.registration_id(&m.online_meeting_id, &people[0].id).expect("registered");

    let not_ready = run(&app).await;
    assert_eq!((not_ready.not_ready, written(&app).len()), (1, 0), "no report yet: nothing is written");

    app.sim.put_attendance_report(
        &m.online_meeting_id,
        Duration::ZERO,
        vec![
            // Joined with another address: the registration says who.
            SimAttendee {
                email: "alias@elsewhere.example".into(),
                display_name: "Person One".into(),
                registration_id: Some(first),
                external_id: Some(people[0].id.clone()),
                intervals: vec![interval(0, 400), interval(10, 200)],
            },
            SimAttendee {
                email: people[1].email.to_uppercase(),
                display_name: "Person Two".into(),
                intervals: vec![interval(5, 300)],
                ..SimAttendee::default()
            },
            SimAttendee {
                email: "walk-in@guest.example".into(),
                display_name: "A Guest".into(),
                intervals: vec![interval(0, 900)],
                ..SimAttendee::default()
            },
        ],
    );
    // The platform fails the first write-back: it is retried.
    app.sim.fail_write_backs(&[503]);
    let read = run(&app).await;
    assert_eq!(read.read, 1);
    run(&app).await;
    let expected =
        vec![(people[0].id.clone(), true, 600), (people[1].id.clone(), true, 300), (people[2].id.clone(), false, 0)];
    assert_eq!(written(&app), expected, "every registrant once, the absent too");
    let sent = app.sim.write_backs();
    let one = sent
        .iter()
        .find(|w| w.registrant_id == people[0].id && w.body.get("attended").is_some() && w.status < 300)
        .unwrap();
    assert!(one.body["first_join"].as_str().is_some_and(|t| !t.is_empty()), "{:?}", one.body);
    assert_eq!(one.body["email"], json!(people[0].email));
    let unmatched: Vec<(String, i64)> =
        sqlx::query_as("SELECT email, total_seconds FROM ops.unmatched_attendees").fetch_all(&app.pool).await.unwrap();
    assert_eq!(unmatched, vec![("walk-in@guest.example".to_owned(), 900)], "walk-ins are reported, not dropped");

    run(&app).await;
    assert_eq!(written(&app), expected, "the same report is not written again");

    // The third person joined late; a second report shows it.
    app.sim.put_attendance_report(
        &m.online_meeting_id,
        Duration::ZERO,
        vec![SimAttendee {
            email: people[2].email.clone(),
            intervals: vec![interval(30, 120)],
            ..SimAttendee::default()
        }],
    );
    run(&app).await;
    let mut changed = expected.clone();
    changed.push((people[2].id.clone(), true, 120));
    changed.sort();
    assert_eq!(written(&app), changed, "only the changed figure is written again");
    let rows = app
        .scalar("SELECT count(*) FROM ops.attendance WHERE written_back_at IS NOT NULL AND last_error IS NULL")
        .await;
    assert_eq!(rows, 3);
}

#[tokio::test]
async fn an_online_meetings_attendance_is_matched_by_e_mail_and_a_refusal_is_kept_as_the_reason() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        attendance(s);
    })
    .await;
    let m = app.listed(ended(1));
    app.sim.upsert_registrant(SimRegistrant::new(&m.id, 1));
    cycle(&app).await;
    app.sim.put_attendance_report(
        &m.online_meeting_id,
        Duration::ZERO,
        vec![SimAttendee {
            email: SimRegistrant::new(&m.id, 1).email,
            intervals: vec![interval(0, 1800)],
            ..SimAttendee::default()
        }],
    );
    app.sim.fail_write_backs(&[422]);
    run(&app).await;
    run(&app).await;
    assert!(written(&app).is_empty(), "a refusal is not sent again while the figures stay");
    let error: String = sqlx::query_scalar("SELECT last_error FROM ops.attendance").fetch_one(&app.pool).await.unwrap();
    assert!(error.contains("HTTP 422"), "{error}");
    app.sim.put_attendance_report(
        &m.online_meeting_id,
        Duration::ZERO,
        vec![SimAttendee {
            email: SimRegistrant::new(&m.id, 1).email,
            intervals: vec![interval(40, 60)],
            ..SimAttendee::default()
        }],
    );
    run(&app).await;
    assert_eq!(written(&app), vec![(SimRegistrant::new(&m.id, 1).id, true, 1860)], "changed figures are sent");
}
