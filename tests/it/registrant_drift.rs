//! Registrants keep every safety rule meetings have: an unknown outcome
//! settles before its lookup whatever makes the registrant due, a listing
//! that leads to the same page twice is cut instead of looping, and a
//! registrant that vanishes from a complete listing is removed under
//! `sync.on_missing = "unregister"`.

use std::time::Duration;

use regsync::config::OnMissing;
use regsync_sim::{Fault, SimRegistrant};

use crate::helpers::{meeting, spawn_app_with};
use crate::registrants::{calls, cycle, with_registrants};

#[tokio::test]
async fn a_platform_change_does_not_look_up_an_unknown_enrolment_before_its_request_could_have_landed() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        // Long enough that the second cycle surely runs inside it.
        s.sync.lease_ttl_ms = 40_000;
        s.graph.timeout_ms = 8_000;
    })
    .await;
    let m = app.listed(meeting(1));
    app.tick().await;
    let mut person = SimRegistrant::new(&m.id, 1);
    app.sim.upsert_registrant(person.clone());
    app.sim.fail_next(Some("POST"), Fault::LostResponse);
    app.tick().await; // the create times out: its outcome is unknown

    // The platform changes the person at once: due now, yet the create may
    // still be in progress at Graph.
    person.first_name = "Renamed".into();
    app.sim.upsert_registrant(person.clone());
    app.tick().await;
    let lookups_early = calls(&app, "GET registrants");

    tokio::time::sleep(Duration::from_millis(8_100)).await;
    cycle(&app).await;

    assert_eq!(lookups_early, 0, "no lookup while the unknown write may still land");
    assert_eq!(calls(&app, "GET registrants"), 1, "looked up once it settled");
    assert_eq!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).len(), 1);
}

#[tokio::test]
async fn a_registrant_listing_that_leads_to_the_same_page_twice_is_cut_as_partial() {
    let app = spawn_app_with(with_registrants).await;
    let m = app.listed(meeting(1));
    app.sim.seed_registrants(std::slice::from_ref(&m), 3);
    app.sim.loop_registrant_pages();

    let report = app.tick().await;

    let partial = report.registrants.and_then(|r| r.partial).unwrap_or_default();
    assert!(partial.contains("twice"), "{partial:?}");
    assert_eq!(app.sim.registrant_listing_requests(), 2, "the page it led back to is not read again");
}

#[tokio::test]
async fn a_registrant_gone_from_a_complete_listing_is_removed_under_on_missing_unregister() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        s.sync.on_missing = OnMissing::Unregister;
    })
    .await;
    let m = app.listed(meeting(1));
    let people = app.sim.seed_registrants(std::slice::from_ref(&m), 3);
    cycle(&app).await;
    assert_eq!(app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).len(), 3);

    app.sim.remove_registrant(&m.id, &people[0].id);
    cycle(&app).await;

    let held: Vec<String> =
        app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).into_iter().map(|r| r.id).collect();
    assert_eq!(held, [people[1].id.clone(), people[2].id.clone()]);
    assert_eq!(calls(&app, "DELETE registrant"), 1);
    let desired: String = sqlx::query_scalar("SELECT desired FROM ops.registrant_status WHERE external_id = $1")
        .bind(&people[0].id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(desired, "unregistered");
}

#[tokio::test]
async fn a_registrant_outcome_the_database_refuses_once_is_written_again_and_nothing_is_sent_twice() {
    let app = spawn_app_with(with_registrants).await;
    let m = app.listed(meeting(1));
    app.tick().await;
    // The first outcome that releases a registrant's lease fails as a
    // serialization failure would: transient.
    sqlx::raw_sql(
        r#"
        CREATE SEQUENCE fail_once;
        CREATE FUNCTION fail_once() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF OLD.lease_token IS NOT NULL AND NEW.lease_token IS NULL AND nextval('fail_once') = 1 THEN
                RAISE EXCEPTION 'injected' USING ERRCODE = '40001';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER fail_once BEFORE UPDATE ON registrants FOR EACH ROW EXECUTE FUNCTION fail_once();
        "#,
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let person = SimRegistrant::new(&m.id, 1);
    app.sim.upsert_registrant(person.clone());

    cycle(&app).await;

    let held = app.sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
    assert_eq!(held.len(), 1);
    assert_eq!(calls(&app, "POST registrant"), 1, "the answer was kept, not lost and sent again");
    let written = app.sim.write_backs();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].body["join_web_url"].as_str(), Some(held[0].join_web_url.as_str()));
}

/// A registrant stored and claimed under a fresh lease, as a worker holds
/// it.
pub async fn claimed_registrant(pool: &sqlx::PgPool) -> regsync::store::registrants::ClaimedRegistrant {
    use regsync::domain::{Desired, ExternalRegistrant, Person};
    use regsync::store::registrants::{claim_due, upsert_page};

    let person = ExternalRegistrant {
        external_id: "p-1".into(),
        meeting_external_id: "evt-1".into(),
        desired: Desired::Registered,
        person: Person::default(),
        updated_at: None,
        answers: Default::default(),
    };
    upsert_page(pool, std::slice::from_ref(&person)).await.unwrap();
    let round = chrono::Utc::now() + chrono::Duration::seconds(1);
    let ttl = Duration::from_secs(10);
    claim_due(pool, 1, ttl, 5, uuid::Uuid::new_v4(), round).await.unwrap().remove(0)
}

#[tokio::test]
async fn a_write_back_is_sent_only_while_the_lease_is_the_workers() {
    let app = spawn_app_with(with_registrants).await;
    let claimed = claimed_registrant(&app.pool).await;
    let ttl = Duration::from_secs(10);

    let renew = regsync::store::registrants::renew_lease;
    assert!(renew(&app.pool, &claimed, ttl).await.unwrap(), "still ours: renewed");
    sqlx::query("UPDATE registrants SET lease_token = gen_random_uuid()").execute(&app.pool).await.unwrap();
    assert!(!renew(&app.pool, &claimed, ttl).await.unwrap(), "taken over: no write-back");
}

#[tokio::test]
async fn a_refused_write_back_keeps_no_password_from_the_platforms_url() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        let base = s.source.base_url.clone().unwrap_or_default();
        s.source.base_url = Some(base.replacen("http://", "http://sync:hunter2@", 1));
    })
    .await;
    let m = app.listed(meeting(1));
    app.sim.seed_registrants(std::slice::from_ref(&m), 1);
    app.sim.fail_write_backs(&[422]);

    cycle(&app).await;

    let error: String =
        sqlx::query_scalar("SELECT last_error FROM ops.registrant_status").fetch_one(&app.pool).await.unwrap();
    assert!(error.contains("HTTP 422"), "{error}");
    assert!(!error.contains("hunter2") && !error.contains("sync:"), "{error}");
}

#[tokio::test]
async fn a_registrant_of_a_meeting_the_platform_never_lists_fails_with_the_reason_and_recovers_when_it_is_listed() {
    let app = spawn_app_with(|s| {
        with_registrants(s);
        // One listing of everyone, so a person can name an unlisted meeting.
        s.registrants.path = "/registrants".into();
        s.sync.max_attempts = 2;
    })
    .await;
    let unlisted = meeting(1);
    let person = SimRegistrant::new(&unlisted.id, 1);
    app.sim.upsert_registrant(person.clone());

    cycle(&app).await;

    let (state, error): (String, String) =
        sqlx::query_as("SELECT state, last_error FROM ops.registrant_status").fetch_one(&app.pool).await.unwrap();
    assert_eq!(state, "failed", "{error}");
    assert!(error.contains("does not list meeting \"evt-1\""), "{error}");

    app.listed(unlisted.clone());
    cycle(&app).await;
    cycle(&app).await;
    assert_eq!(app.sim.graph_registrants(&unlisted.organizer_id, &unlisted.online_meeting_id).len(), 1);
}

#[tokio::test]
async fn a_webinar_whose_status_read_hangs_holds_no_other_webinars_registrants() {
    let app = crate::registrants::webinar_app(|s| {
        s.graph.timeout_ms = 30_000;
        s.sync.lease_ttl_ms = 120_000;
    })
    .await;
    let slow = crate::registrants::listed_webinar(&app, 1, "published");
    let other = crate::registrants::listed_webinar(&app, 2, "published");
    app.sim.seed_registrants(&[slow.clone(), other.clone()], 1);
    let release = app.sim.hold_webinar_status(&slow.online_meeting_id);
    let listed = regsync::sync::ingest::poll(&app.ctx).await.expect("meetings listed");
    regsync::sync::registrants::poll(&app.ctx, listed.run_id).await.expect("registrants listed");
    let ctx = app.ctx.clone();
    let pass = tokio::spawn(async move { regsync::sync::reconcile_due(&ctx).await });

    let other_registered = crate::helpers::eventually(std::time::Duration::from_secs(10), async || {
        !crate::registrants::registrations(&app, &other).is_empty()
    })
    .await;
    release.send(true).expect("released");
    pass.await.expect("joined").expect("the pass");

    assert!(other_registered, "the other webinar's person waited for a status read of another webinar");
}

#[tokio::test]
async fn a_webinar_status_read_waiting_for_a_graph_slot_does_not_take_the_probe() {
    // One Graph slot; a first webinar's status read holds it.
    let app = crate::registrants::webinar_app(|s| {
        s.graph.max_concurrency = 1;
        s.graph.timeout_ms = 30_000;
        s.sync.lease_ttl_ms = 120_000;
    })
    .await;
    let slow = crate::registrants::listed_webinar(&app, 1, "published");
    let other = crate::registrants::listed_webinar(&app, 2, "published");
    app.sim.seed_registrants(std::slice::from_ref(&slow), 1);
    let release = app.sim.hold_webinar_status(&slow.online_meeting_id);
    let listed = regsync::sync::ingest::poll(&app.ctx).await.expect("meetings listed");
    regsync::sync::registrants::poll(&app.ctx, listed.run_id).await.expect("registrants listed");
    let ctx = app.ctx.clone();
    let first = tokio::spawn(async move { regsync::sync::registrants::reconcile_due(&ctx).await });
    let holding =
        crate::helpers::eventually(std::time::Duration::from_secs(10), async || app.sim.held_status_reads() == 1).await;
    assert!(holding, "the first status read is at Graph");

    // A throttle hold has just passed: the next request to go is the probe.
    // Another webinar's registrant waits for the slot, not yet for Graph.
    regsync::store::throttle::hold(&app.pool, std::time::Duration::ZERO).await.expect("hold");
    app.sim.seed_registrants(std::slice::from_ref(&other), 1);
    regsync::sync::registrants::poll(&app.ctx, listed.run_id).await.expect("registrants listed");
    let ctx = app.ctx.clone();
    let second = tokio::spawn(async move { regsync::sync::registrants::reconcile_due(&ctx).await });
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let probe_out: bool =
        sqlx::query_scalar("SELECT probe_until IS NOT NULL FROM graph_throttle").fetch_one(&app.pool).await.unwrap();
    release.send(true).expect("released");
    first.await.expect("joined").expect("the first pass");
    second.await.expect("joined").expect("the second pass");

    assert!(!probe_out, "a request still waiting for its slot took the probe: every other sender waited for it");
}
