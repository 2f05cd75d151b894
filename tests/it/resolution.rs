//! Platforms that hold the organizer's e-mail and the Teams join link, not
//! Graph's ids: each is resolved once through Graph, remembered, and a
//! value Graph does not know fails its meeting with that value.

use regsync::config::Settings;
use regsync_sim::{join_url_of, upn_of, SimMeeting};
use serde_json::json;

use crate::helpers::{spawn_app_with, TestApp};

fn by_reference(s: &mut Settings) {
    s.source.fields.organizer_upn = "/organizer_email".into();
    s.source.fields.join_url = "/join_url".into();
}

async fn app_by_reference() -> TestApp {
    let app = spawn_app_with(by_reference).await;
    app.sim.list_by_reference(true);
    app
}

#[tokio::test]
async fn a_listing_of_emails_and_join_links_registers_every_meeting_and_a_second_cycle_calls_nothing() {
    let app = app_by_reference().await;
    app.sim.seed(25); // five organizers; 23 active meetings

    app.tick().await;

    assert_eq!(app.sim.stats().registrations, 23, "every active meeting registered");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 25);
    let lookups = app.sim.lookups();
    let users = lookups.iter().filter(|l| l.kind == "user").count();
    let meetings = lookups.iter().filter(|l| l.kind == "meeting").count();
    assert_eq!((users, meetings), (5, 23), "one lookup per organizer and per active meeting: {lookups:?}");
    assert!(lookups.iter().all(|l| l.status == 200), "{lookups:?}");
    assert_eq!(app.scalar("SELECT count(*) FROM ops.resolutions").await, 28);
    let audited = app
        .scalar("SELECT count(*) FROM graph_calls WHERE path LIKE '/users/%' AND path NOT LIKE '%/registration'")
        .await;
    assert_eq!(audited, 28, "lookups are in the audit table");

    let graph_requests = app.sim.log().len();
    app.tick().await;

    assert_eq!(app.sim.lookups().len(), 28, "a steady cycle looks nothing up");
    assert_eq!(app.sim.log().len(), graph_requests, "a steady cycle makes no Graph call");
}

#[tokio::test]
async fn an_unknown_email_and_an_unknown_join_link_each_fail_their_meeting_with_the_value() {
    let app = app_by_reference().await;
    let known = app.synced(SimMeeting::new("evt-known", "org-1", "MSpKnown")).await;
    app.sim.push_raw_item(json!({
        "id": "evt-nobody", "organizer_email": "nobody@contoso.example",
        "join_url": join_url_of(&known.online_meeting_id), "status": "active"
    }));
    let stray_link = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_Stray%40thread.v2/0";
    app.sim.push_raw_item(json!({
        "id": "evt-stray", "organizer_email": upn_of("org-1"), "join_url": stray_link, "status": "active"
    }));

    app.tick().await;

    let nobody = app.status("evt-nobody").await;
    assert_eq!(nobody.state, "failed");
    assert!(nobody.last_error.unwrap_or_default().contains("\"nobody@contoso.example\""));
    let stray = app.status("evt-stray").await;
    assert_eq!(stray.state, "failed");
    assert!(stray.last_error.unwrap_or_default().contains(stray_link));
    assert_eq!(app.sim.stats().registrations, 1, "nothing registered for either");

    let lookups = app.sim.lookups().len();
    app.tick().await;
    assert_eq!(app.sim.lookups().len(), lookups, "a failed resolution waits for a change or `regsync retry`");

    regsync::store::meetings::retry(&app.pool, Some("evt-nobody")).await.expect("retry");
    app.tick().await;
    assert_eq!(app.sim.lookups().len(), lookups + 1, "`regsync retry` looks the e-mail up again");
}

#[tokio::test]
async fn a_changed_join_link_is_resolved_again_and_the_registration_moves() {
    let app = app_by_reference().await;
    let meeting = app.synced(SimMeeting::new("evt-1", "org-1", "MSpOld")).await;
    let lookups = app.sim.lookups().len();

    app.sim.update_meeting(&meeting.id, |m| m.online_meeting_id = "MSpNew".into());
    app.tick().await;

    let again: Vec<_> = app.sim.lookups().into_iter().skip(lookups).collect();
    assert_eq!(again.len(), 1, "only the new join link is looked up (the organizer is remembered): {again:?}");
    assert_eq!(again[0].value, join_url_of("MSpNew"));
    assert!(app.sim.registration("org-1", "MSpOld").is_none(), "the old meeting's registration is removed");
    assert!(app.sim.registration("org-1", "MSpNew").is_some(), "the new meeting is registered");
    assert_eq!(app.status("evt-1").await.state, "synced");
}

#[tokio::test]
async fn a_filter_that_answers_other_meetings_is_not_trusted_only_the_asked_join_link_counts() {
    let app = app_by_reference().await;
    app.synced(SimMeeting::new("evt-known", "org-1", "MSpKnown")).await;
    app.sim.misfilter_meetings();
    let stray_link = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_Stray%40thread.v2/0";
    app.sim.push_raw_item(json!({
        "id": "evt-stray", "organizer_email": upn_of("org-1"), "join_url": stray_link, "status": "active"
    }));

    app.tick().await;

    let stray = app.status("evt-stray").await;
    assert_eq!(stray.state, "failed", "MSpKnown answered the filter, but its join link is another");
    assert!(stray.last_error.unwrap_or_default().contains(stray_link));
    assert_eq!(app.sim.stats().registrations, 1, "nothing registered on another meeting");
}

#[tokio::test]
async fn a_join_link_resolved_for_one_organizer_is_not_applied_to_another_and_retry_looks_again() {
    let app = app_by_reference().await;
    let first = app.synced(SimMeeting::new("evt-a", "org-1", "MSpShared")).await;
    app.sim.add_online_meeting("org-2", "MSpOther"); // org-2 is a user Graph knows
                                                     // Another organizer's platform meeting names the same link: it is looked
                                                     // up among that organizer's meetings, where Graph has none.
    app.sim.push_raw_item(json!({
        "id": "evt-b", "organizer_email": upn_of("org-2"), "join_url": join_url_of(&first.online_meeting_id),
        "status": "active"
    }));
    app.tick().await;

    let other = app.status("evt-b").await;
    assert_eq!(other.state, "failed", "org-1's answer is not org-2's");
    let why = other.last_error.unwrap_or_default();
    assert!(why.contains("meetup-join"), "not found among org-2's meetings: {why}");
    let link_lookups = |app: &TestApp| app.sim.lookups().iter().filter(|l| l.kind == "meeting").count();
    assert_eq!(link_lookups(&app), 2, "the link was looked up for each organizer");
    assert_eq!(app.sim.stats().registrations, 1);

    // Once Graph has it for org-2, `regsync retry` looks it up again.
    app.sim.add_online_meeting("org-2", "MSpShared");
    regsync::app::retry(&app.settings, &regsync::app::RetryWhat::Meeting("evt-b".into())).await.expect("retry");
    app.tick().await;
    app.settle().await;
    assert_eq!(app.status("evt-b").await.state, "synced");
    assert!(app.sim.registration("org-2", "MSpShared").is_some());
}

#[tokio::test]
async fn a_404_for_a_resolved_organizer_drops_the_resolution_and_the_next_attempt_looks_the_e_mail_up_again() {
    let app = spawn_app_with(|s| s.source.fields.organizer_upn = "/organizer_email".into()).await;
    let raw = |id: &str, meeting: &str| json!({"id": id, "organizer_email": upn_of("org-1"), "online_meeting_id": meeting, "status": "active"});
    app.sim.add_online_meeting("org-1", "MSpFirst");
    app.sim.push_raw_item(raw("evt-first", "MSpFirst"));
    app.tick().await;
    app.settle().await;
    assert_eq!(app.status("evt-first").await.state, "synced");

    // The address now belongs to someone else, whose meeting the platform
    // lists next; what regsync remembered of the address is stale.
    app.sim.reassign_upn(&upn_of("org-1"), "org-9");
    app.sim.add_online_meeting("org-9", "MSpSecond");
    app.sim.push_raw_item(raw("evt-second", "MSpSecond"));
    app.tick().await;
    app.settle().await;

    let second = app.status("evt-second").await;
    assert_eq!(second.state, "synced", "{:?}", second.last_error);
    assert!(app.sim.registration("org-9", "MSpSecond").is_some());
}

#[tokio::test]
async fn a_resolution_older_than_its_lifetime_is_looked_up_again() {
    let app = spawn_app_with(|s| {
        by_reference(s);
        s.graph.resolution_max_age_secs = 1;
    })
    .await;
    app.sim.list_by_reference(true);
    app.synced(SimMeeting::new("evt-1", "org-1", "MSpOne")).await;
    let user_lookups = |app: &TestApp| app.sim.lookups().iter().filter(|l| l.kind == "user").count();
    assert_eq!(user_lookups(&app), 1);

    app.synced(SimMeeting::new("evt-2", "org-1", "MSpTwo")).await;
    assert_eq!(user_lookups(&app), 1, "within its lifetime the organizer's e-mail is not looked up again");

    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    app.synced(SimMeeting::new("evt-3", "org-1", "MSpThree")).await;
    assert_eq!(user_lookups(&app), 2, "after it, it is");
}
