//! The v1.0 successor's two kinds of event, through the same engine: town
//! halls take registrations in the webinar's shape under their own
//! collection, and a registration answers the event's registration
//! questions from the platform's fields (`registrants.answers.*`).

use regsync::config::{Settings, Target};
use regsync_sim::{SimMeeting, SimQuestion, SimRegistrant};
use serde_json::json;

use crate::helpers::{meeting, spawn_app_with, TestApp};
use crate::registrants::{calls, cycle, registrations, with_registrants};

/// The town-hall target: v1.0, each meeting a town hall.
pub fn townhalls(s: &mut Settings) {
    with_registrants(s);
    s.graph.target = Target::VirtualEventTownhall;
    s.graph.base_url = s.graph.base_url.replace("/beta", "/v1.0");
    s.source.fields.townhall_id = "/online_meeting_id".into();
}

/// Answers mapped from the registration form's fields.
fn answering(s: &mut Settings) {
    s.registrants.answers.insert("Job title".into(), "/job_title".into());
    s.registrants.answers.insert("Consent to recording".into(), "/consent".into());
    s.registrants.answers.insert("Tracks".into(), "$.tracks".into());
}

/// Event `m` with a required predefined question, a required yes/no and an
/// optional multiple choice.
fn ask_questions(app: &TestApp, m: &SimMeeting) {
    let question = |id: &str, name: &str, input: &str, required: bool| SimQuestion {
        id: id.into(),
        display_name: name.into(),
        label: None,
        input: input.into(),
        choices: Vec::new(),
        required,
    };
    app.sim.put_question(
        &m.online_meeting_id,
        SimQuestion { label: Some("jobTitle".into()), ..question("q-job", "Job title", "text", true) },
    );
    app.sim.put_question(&m.online_meeting_id, question("q-consent", "Consent to recording", "boolean", true));
    app.sim.put_question(
        &m.online_meeting_id,
        SimQuestion {
            choices: vec!["Rust".into(), "Teams".into()],
            ..question("q-tracks", "Tracks", "multiChoice", false)
        },
    );
}

/// Three people who answer the required questions and one who leaves the
/// job title out.
fn people(m: &SimMeeting) -> Vec<SimRegistrant> {
    let mut people: Vec<SimRegistrant> = (1..=3)
        .map(|n| {
            SimRegistrant::new(&m.id, n)
                .answering("job_title", json!(format!("Engineer {n}")))
                .answering("consent", json!(true))
                .answering("tracks", json!(["Rust"]))
        })
        .collect();
    people.push(SimRegistrant::new(&m.id, 4).answering("consent", json!("yes")));
    people
}

async fn registered_once_with_answers(app: TestApp, m: SimMeeting) {
    ask_questions(&app, &m);
    for p in people(&m) {
        app.sim.upsert_registrant(p);
    }

    cycle(&app).await;
    cycle(&app).await;

    assert_eq!(calls(&app, "POST registration"), 3, "one registration per person who answered, none twice");
    let held = registrations(&app, &m);
    assert_eq!(held.len(), 3, "{held:#?}");
    for r in &held {
        let n = r.external_id.chars().last().unwrap();
        let answers: Vec<_> = r.answers.iter().map(|a| (a["questionId"].as_str().unwrap_or_default(), a)).collect();
        let answer = |id: &str| answers.iter().find(|(q, _)| *q == id).map(|(_, a)| (*a).clone());
        assert_eq!(answer("q-job").unwrap()["value"], json!(format!("Engineer {n}")), "{r:?}");
        assert_eq!(answer("q-consent").unwrap()["booleanValue"], json!(true), "{r:?}");
        assert_eq!(answer("q-tracks").unwrap()["multiChoiceValues"], json!(["Rust"]), "{r:?}");
    }
    let (state, error): (String, String) =
        sqlx::query_as("SELECT state, last_error FROM ops.registrant_status WHERE external_id = $1")
            .bind(format!("{}-p004", m.id))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(state, "failed");
    assert!(error.contains("\"Job title\" requires an answer"), "the reason names the question: {error}");
    let synced = app.scalar("SELECT count(*) FROM ops.registrant_status WHERE state = 'synced'").await;
    assert_eq!(synced, 3);
    assert!(app.sim.log().is_empty(), "no meeting-level registration call for a virtual event: {:?}", app.sim.log());
    let meeting_synced = app.scalar("SELECT count(*) FROM ops.meeting_status WHERE state = 'synced'").await;
    assert_eq!(meeting_synced, 1, "the event is the meeting: nothing to enable");
}

#[tokio::test]
async fn a_town_halls_registrants_are_registered_once_with_their_answers_and_one_missing_a_required_answer_fails_naming_it(
) {
    let app = spawn_app_with(|s| {
        townhalls(s);
        answering(s);
    })
    .await;
    let m = app.listed(meeting(1));
    app.sim.put_townhall(&m.online_meeting_id, "published");
    registered_once_with_answers(app, m).await;
}

#[tokio::test]
async fn a_webinars_registrants_are_registered_once_with_their_answers_and_one_missing_a_required_answer_fails_naming_it(
) {
    let app = crate::registrants::webinar_app(answering).await;
    let m = crate::registrants::listed_webinar(&app, 1, "published");
    registered_once_with_answers(app, m).await;
}

#[tokio::test]
async fn a_town_hall_is_not_a_webinar_the_webinar_target_finds_no_such_webinar() {
    let app = crate::registrants::webinar_app(|_| {}).await;
    let m = app.listed(meeting(1));
    app.sim.put_townhall(&m.online_meeting_id, "published");
    app.sim.seed_registrants(std::slice::from_ref(&m), 1);

    cycle(&app).await;

    assert_eq!(calls(&app, "POST registration"), 0);
    let error = app.scalar("SELECT count(*) FROM ops.registrant_status WHERE state = 'failed'").await;
    assert_eq!(error, 1, "a town hall's id is unknown among webinars: a 404 is the registrant's failure");
}
