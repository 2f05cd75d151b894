//! Registrants follow their meeting: Graph deletes a meeting's registrants
//! with its registration, so when regsync re-creates or removes the
//! registration (a move, a cancel and reactivation) its people are enrolled
//! again under the new one with their new links written back; a webinar
//! whose meeting is cancelled has its registrations cancelled. And a lost
//! answer is never read as "absent" from a list that lags behind.

use std::time::Duration;

use regsync_sim::{Fault, SimMeeting, SimRegistrant};

use crate::helpers::{eventually, meeting, spawn_app_with, TestApp};
use crate::registrants::{calls, cycle, listed_webinar, registrations, webinar_app, with_registrants};

/// Every person of `m` is held once at Graph, and the last link the platform
/// was told for each is the one Graph holds now.
fn assert_enrolled_with_current_links(app: &TestApp, m: &SimMeeting, people: &[SimRegistrant]) {
    let held = app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
    assert_eq!(held.len(), people.len(), "every person enrolled under the registration Graph holds now");
    let write_backs = app.sim.write_backs();
    for p in people {
        let link = &held.iter().find(|r| r.id == p.id).expect("enrolled").join_web_url;
        let last = write_backs
            .iter()
            .rev()
            .find(|w| w.registrant_id == p.id && w.body.get("join_web_url").is_some())
            .expect("written back");
        assert_eq!(last.body["join_web_url"].as_str(), Some(link.as_str()), "{}: the link that works", p.id);
    }
}

#[tokio::test]
async fn a_meeting_moved_to_another_teams_meeting_takes_its_registrants_along() {
    let app = spawn_app_with(with_registrants).await;
    let m = app.listed(meeting(1));
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 3);
    cycle(&app).await;
    assert_enrolled_with_current_links(&app, &m, &people);

    app.sim.update_meeting(&m.id, |m| m.online_meeting_id = "MSpMoved".into());
    cycle(&app).await;
    cycle(&app).await;

    let moved = SimMeeting { online_meeting_id: "MSpMoved".into(), ..m.clone() };
    assert!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).is_empty(), "none left behind");
    assert_enrolled_with_current_links(&app, &moved, &people);
    assert_eq!(calls(&app, "POST registrant"), 6, "each person enrolled once per registration");
    assert_eq!(calls(&app, "DELETE registrant"), 0, "no call for registrants Graph deleted with their registration");
}

#[tokio::test]
async fn a_meeting_cancelled_then_reactivated_has_its_registrants_enrolled_again() {
    let app = spawn_app_with(with_registrants).await;
    let m = app.listed(meeting(1));
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    cycle(&app).await;

    app.sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
    cycle(&app).await;
    assert!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).is_empty());
    app.sim.update_meeting(&m.id, |m| m.status = "active".into());
    cycle(&app).await;
    cycle(&app).await;

    assert_enrolled_with_current_links(&app, &m, &people);
    let synced = app
        .scalar("SELECT count(*) FROM ops.registrant_status WHERE state = 'synced' AND join_web_url IS NOT NULL")
        .await;
    assert_eq!(synced, 2);
}

#[tokio::test]
async fn a_cancelled_webinar_meeting_has_its_registrations_cancelled() {
    let app = webinar_app(|_| {}).await;
    let m = listed_webinar(&app, 1, "published");
    app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    cycle(&app).await;
    assert_eq!(registrations(&app, &m).len(), 2);

    app.sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
    cycle(&app).await;
    cycle(&app).await;

    let live = registrations(&app, &m).into_iter().filter(|r| r.status == "registered").count();
    assert_eq!(live, 0, "every registration of the cancelled meeting cancelled");
    assert_eq!(calls(&app, "POST cancel"), 2, "each once");
}

#[tokio::test]
async fn a_lost_webinar_answer_with_a_lagging_list_registers_the_person_once() {
    let app = webinar_app(|s| {
        s.graph.timeout_ms = 2_000;
        s.graph.list_settle_secs = 30;
    })
    .await;
    let m = listed_webinar(&app, 1, "published");
    app.tick().await;
    app.sim.lag_webinar_list(Duration::from_secs(8));
    app.sim.upsert_registrant(SimRegistrant::new(&m.id, 1));
    app.sim.fail_next(Some("POST"), Fault::LostResponse);

    app.tick().await;
    let written_back = eventually(Duration::from_secs(40), async || {
        app.reconcile().await;
        !app.sim.write_backs().is_empty()
    })
    .await;

    assert!(written_back, "found once the list shows it, and written back");
    assert_eq!(calls(&app, "POST registration"), 1, "never registered again while the list lagged");
    let held = registrations(&app, &m);
    assert_eq!(held.len(), 1);
    assert_eq!(app.sim.write_backs()[0].body["registration_id"].as_str(), Some(held[0].id.as_str()));
}

#[tokio::test]
async fn a_create_that_never_happened_is_sent_again_once_the_settle_time_has_passed() {
    let app = webinar_app(|s| {
        s.graph.timeout_ms = 1_000;
        s.graph.list_settle_secs = 3;
    })
    .await;
    let m = listed_webinar(&app, 1, "published");
    app.tick().await;
    app.sim.upsert_registrant(SimRegistrant::new(&m.id, 1));
    // A 503 may have acted; this one did not.
    app.sim.fail_next(Some("POST"), Fault::Status { status: 503, retry_after: None });

    cycle(&app).await;
    let registered = eventually(Duration::from_secs(30), async || {
        app.reconcile().await;
        !app.sim.write_backs().is_empty()
    })
    .await;

    assert!(registered);
    assert_eq!(registrations(&app, &m).len(), 1, "registered once, after the settle time");
    assert_eq!(calls(&app, "POST registration"), 2, "the refused one and the one that took");
}

#[tokio::test]
async fn a_registrant_whose_id_is_a_dot_segment_is_rejected_with_the_reason_and_nothing_else_is_touched() {
    let app = spawn_app_with(with_registrants).await;
    let m = app.listed(meeting(1));
    let mut dots = SimRegistrant::new(&m.id, 1);
    dots.id = "..".into();
    let mut dot = SimRegistrant::new(&m.id, 2);
    dot.id = " . ".into();
    let fine = SimRegistrant::new(&m.id, 3);
    for r in [&dots, &dot, &fine] {
        app.sim.upsert_registrant(r.clone());
    }

    cycle(&app).await;

    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT reason FROM ops.rejected_items ORDER BY reason").fetch_all(&app.pool).await.unwrap();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|r| r.contains("which is not an id")), "{reasons:?}");
    let written: Vec<String> = app.sim.write_backs().into_iter().map(|w| w.registrant_id).collect();
    assert_eq!(written, std::slice::from_ref(&fine.id), "only the valid registrant's own resource is written");
    assert_eq!(calls(&app, "POST registrant"), 1);
}

#[tokio::test]
async fn a_lost_webinar_answer_is_found_by_e_mail_or_by_listing_where_the_app_may_not_get_one() {
    for may_get_one in [true, false] {
        let app = webinar_app(|s| s.graph.timeout_ms = 1_000).await;
        let m = listed_webinar(&app, 1, "published");
        app.tick().await;
        if !may_get_one {
            app.sim.refuse_registration_get();
        }
        app.sim.upsert_registrant(SimRegistrant::new(&m.id, 1));
        app.sim.fail_next(Some("POST"), Fault::LostResponse);

        app.tick().await;
        let written_back = eventually(Duration::from_secs(20), async || {
            app.reconcile().await;
            !app.sim.write_backs().is_empty()
        })
        .await;

        let case = if may_get_one { "by e-mail" } else { "by listing" };
        assert!(written_back, "{case}");
        assert_eq!(calls(&app, "POST registration"), 1, "{case}: registered once");
        let held = registrations(&app, &m);
        assert_eq!(app.sim.write_backs()[0].body["registration_id"].as_str(), Some(held[0].id.as_str()), "{case}");
        assert_eq!(calls(&app, "GET registrations") > 0, !may_get_one, "{case}: the list only when needed");
    }
}

#[tokio::test]
async fn duplicate_webinar_registrations_found_on_listing_are_cancelled_keeping_the_first() {
    let app = webinar_app(|s| s.graph.timeout_ms = 1_000).await;
    app.sim.refuse_registration_get(); // the list decides
    let m = listed_webinar(&app, 1, "published");
    let person = SimRegistrant::new(&m.id, 1);
    // Two live registrations of the person already (an earlier deployment
    // whose database was restored from a backup, say).
    let first = app.sim.put_webinar_registration(&m.online_meeting_id, &person.id, &person.email);
    app.sim.put_webinar_registration(&m.online_meeting_id, &person.id, &person.email);
    app.sim.upsert_registrant(person.clone());
    // regsync registers the person too, and loses the answer: it looks.
    app.sim.fail_next(Some("POST"), Fault::LostResponse);

    let written_back = eventually(Duration::from_secs(30), async || {
        app.tick().await;
        !app.sim.write_backs().is_empty()
    })
    .await;
    app.settle().await;

    assert!(written_back);
    let live: Vec<_> = registrations(&app, &m).into_iter().filter(|r| r.status == "registered").collect();
    assert_eq!(live.len(), 1, "one live registration is kept: {live:?}");
    assert_eq!(live[0].id, first, "the first made");
    let last = app.sim.write_backs().last().cloned().expect("a write-back");
    assert_eq!(last.body["registration_id"].as_str(), Some(first.as_str()), "the kept one is written back");
}

#[tokio::test]
async fn a_cancelled_meetings_registrants_are_told_cancelled_and_registered_again_when_it_returns() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        s.writeback.status_url = "/meetings/{meeting_id}/registrants/{registrant_id}/status".into();
    })
    .await;
    let m = app.listed(meeting(1));
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    let statuses = |app: &TestApp, p: &SimRegistrant| -> Vec<String> {
        let told = app.sim.write_backs();
        told.iter()
            .filter(|w| w.registrant_id == p.id && w.status == 200)
            .filter_map(|w| w.body.get("status").and_then(|s| s.as_str()).map(str::to_owned))
            .collect()
    };
    cycle(&app).await;
    assert!(people.iter().all(|p| statuses(&app, p).is_empty()), "a first enrolment is told by its link alone");

    app.sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
    cycle(&app).await;
    cycle(&app).await;
    assert!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).is_empty(), "removed at Teams");
    for p in &people {
        assert_eq!(statuses(&app, p), ["cancelled"], "{}: told once", p.id);
    }

    app.sim.update_meeting(&m.id, |m| m.status = "active".into());
    cycle(&app).await;
    cycle(&app).await;
    assert_enrolled_with_current_links(&app, &m, &people);
    for p in &people {
        assert_eq!(statuses(&app, p), ["cancelled", "registered"], "{}", p.id);
    }
    let told: i64 = app
        .scalar("SELECT count(*) FROM ops.registrant_status WHERE status_written_back = 'registered' AND status_written_back_at IS NOT NULL")
        .await;
    assert_eq!(told, 2);
}
