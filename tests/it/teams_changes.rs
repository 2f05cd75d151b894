//! Changes made in Teams flow back: a cancellation, an approval and a move
//! off the waitlist reach the platform once each (`writeback.status_*`),
//! and the next reconcile does not undo them — until the platform itself
//! changes the registrant later.

use regsync_sim::{RegistrationConfig, SimMeeting, SimRegistrant};

use crate::helpers::TestApp;
use crate::registrants::{calls, cycle, listed_webinar, registrations, webinar_app};

fn status_write_backs(app: &TestApp) -> Vec<(String, String)> {
    let mut sent: Vec<(String, String)> = app
        .sim
        .write_backs()
        .into_iter()
        .filter(|w| w.body.get("status").is_some())
        .map(|w| (w.registrant_id, w.body["status"].as_str().unwrap_or_default().to_owned()))
        .collect();
    sent.sort();
    sent
}

async fn read_back_and_cycle(app: &TestApp) {
    regsync::sync::readback::read_back(&app.ctx).await.expect("the read-back runs");
    cycle(app).await;
}

fn person(m: &SimMeeting, n: usize) -> String {
    SimRegistrant::new(&m.id, n).id
}

#[tokio::test]
async fn a_cancellation_an_approval_and_a_waitlist_move_made_in_teams_reach_the_platform_once_and_stay() {
    let app = webinar_app(|s| {
        s.writeback.status_url = "/meetings/{meeting_id}/registrants/{registrant_id}/status".into();
        s.registrants.status_readback_secs = 60;
    })
    .await;
    let full = listed_webinar(&app, 1, "published");
    app.sim.configure_registration(
        &full.online_meeting_id,
        RegistrationConfig { capacity: 2, waitlist: true, manual_approval: false },
    );
    let approved = listed_webinar(&app, 2, "published");
    app.sim.configure_registration(
        &approved.online_meeting_id,
        RegistrationConfig { capacity: 0, waitlist: false, manual_approval: true },
    );
    // One at a time, so the waitlist takes the third.
    for n in 1..=3 {
        app.sim.upsert_registrant(SimRegistrant::new(&full.id, n));
        cycle(&app).await;
    }
    app.sim.upsert_registrant(SimRegistrant::new(&approved.id, 1));
    cycle(&app).await;
    assert_eq!(calls(&app, "POST registration"), 4);

    read_back_and_cycle(&app).await;
    assert_eq!(
        status_write_backs(&app),
        vec![(person(&full, 3), "waitlisted".into()), (person(&approved, 1), "pending_approval".into())],
        "only a status other than the registration the platform made is told"
    );

    // In Teams: a person cancels, the waitlist moves, the organizer approves.
    assert!(app.sim.change_registration_in_teams(&full.online_meeting_id, &person(&full, 1), "canceled"));
    assert!(app.sim.change_registration_in_teams(&full.online_meeting_id, &person(&full, 3), "registered"));
    assert!(app.sim.change_registration_in_teams(&approved.online_meeting_id, &person(&approved, 1), "registered"));
    read_back_and_cycle(&app).await;
    read_back_and_cycle(&app).await;

    let mut expected = vec![
        (person(&approved, 1), "pending_approval".to_owned()),
        (person(&approved, 1), "registered".to_owned()),
        (person(&full, 1), "cancelled".to_owned()),
        (person(&full, 3), "registered".to_owned()),
        (person(&full, 3), "waitlisted".to_owned()),
    ];
    expected.sort();
    assert_eq!(status_write_backs(&app), expected, "each change reaches the platform once");
    assert_eq!(calls(&app, "POST registration"), 4, "the cancellation made in Teams is not undone");
    assert_eq!(calls(&app, "POST cancel"), 0, "nothing regsync did not need");
    let teams_status: String =
        sqlx::query_scalar("SELECT teams_status FROM ops.registrant_status WHERE external_id = $1")
            .bind(person(&full, 1))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(teams_status, "cancelled");

    // The platform takes the cancellation over: nothing to cancel at Teams.
    app.sim.upsert_registrant(SimRegistrant { status: "cancelled".into(), ..SimRegistrant::new(&full.id, 1) });
    cycle(&app).await;
    assert_eq!(calls(&app, "POST cancel"), 0, "Teams cancelled it already");
    // Later the person registers again on the platform: the later change wins.
    app.sim.upsert_registrant(SimRegistrant::new(&full.id, 1));
    cycle(&app).await;
    assert_eq!(calls(&app, "POST registration"), 5, "registered anew");
    let live: Vec<_> = registrations(&app, &full)
        .into_iter()
        .filter(|r| r.external_id == person(&full, 1) && r.status != "canceled")
        .collect();
    assert_eq!(live.len(), 1, "{live:#?}");
}

#[tokio::test]
async fn a_cancellation_made_in_teams_on_a_town_hall_reaches_the_platform_once() {
    let app = crate::helpers::spawn_app_with(|s| {
        crate::townhalls::townhalls(s);
        s.writeback.status_url = "/meetings/{meeting_id}/registrants/{registrant_id}/status".into();
        s.registrants.status_readback_secs = 60;
    })
    .await;
    let m = app.listed(crate::helpers::meeting(1));
    app.sim.put_townhall(&m.online_meeting_id, "published");
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 2);
    cycle(&app).await;
    assert!(app.sim.change_registration_in_teams(&m.online_meeting_id, &people[0].id, "canceled"));
    read_back_and_cycle(&app).await;
    read_back_and_cycle(&app).await;
    assert_eq!(status_write_backs(&app), vec![(people[0].id.clone(), "cancelled".to_owned())]);
    assert_eq!(calls(&app, "POST registration"), 2, "not undone");
}
