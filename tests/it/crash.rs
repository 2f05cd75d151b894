//! The crash-point matrix: `regsync once` aborts at each crash point,
//! crossed with each remote outcome; a second run must finish the job with
//! exactly one registration at Graph. Needs `--features failpoints`.

use regsync_sim::{Fault, Sim};

use crate::helpers::{eventually, expire_leases, fresh_database, meeting, regsync_cli};

/// Retries after an unknown outcome wait for the request timeout: keep it short.
const SHORT_TIMEOUT: (&str, &str) = ("REGSYNC__GRAPH__TIMEOUT_MS", "200");

const POINTS: [&str; 5] = ["after-claim", "after-intent", "after-send", "after-response", "after-record"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Remote {
    Acted,
    DidNotAct,
    ActedResponseLost,
}

async fn crash_then_recover(point: &str, remote: Remote) {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let m = meeting(1);
    sim.upsert_meeting(m.clone());
    match remote {
        Remote::Acted => {}
        Remote::DidNotAct => sim.fail_next(Some("POST"), Fault::Status { status: 500, retry_after: None }),
        Remote::ActedResponseLost => sim.fail_next(Some("POST"), Fault::LostResponse),
    }
    let failpoints = format!("{point}=return");

    let crashed = {
        let (db, sim) = (db.clone(), sim.clone());
        tokio::task::spawn_blocking(move || {
            regsync_cli(&["once"], &db, &sim, &[("FAILPOINTS", failpoints.as_str()), SHORT_TIMEOUT])
        })
        .await
        .expect("joined")
    };
    // The dead worker's lease runs out.
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    expire_leases(&pool).await;
    // `once` stops when nothing is due now; a retry after an unknown outcome
    // waits for the request timeout first, so run it until the meeting settles.
    let mut recovered = None;
    for _ in 0..10 {
        let (db, sim) = (db.clone(), sim.clone());
        let run = tokio::task::spawn_blocking(move || regsync_cli(&["once"], &db, &sim, &[SHORT_TIMEOUT]))
            .await
            .expect("joined");
        let settled: bool = sqlx::query_scalar("SELECT bool_and(state = 'synced') FROM meetings")
            .fetch_one(&pool)
            .await
            .expect("state");
        recovered = Some(run);
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let recovered = recovered.expect("ran");

    let case = format!("{point} × {remote:?}");
    assert!(!crashed.status.success(), "{case}: the first run crashed");
    assert!(recovered.status.success(), "{case}: {}", String::from_utf8_lossy(&recovered.stderr));
    let log = sim.log();
    let acted_posts = log.iter().filter(|r| r.method == "POST" && r.acted).count();
    assert_eq!(acted_posts, 1, "{case}: exactly one registration created; log {log:?}");
    assert_eq!(sim.stats().posts_while_registered, 0, "{case}: no POST while registered");
    let held = sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered");
    let (state, recorded): (String, Option<String>) =
        sqlx::query_as("SELECT state, registration_id FROM ops.meeting_status").fetch_one(&pool).await.expect("row");
    assert_eq!((state.as_str(), recorded.as_deref()), ("synced", Some(held.id.as_str())), "{case}");
    let posted_before_crash = matches!(point, "after-send" | "after-response" | "after-record")
        || (point == "after-intent" && remote != Remote::Acted);
    if remote == Remote::ActedResponseLost && posted_before_crash && point != "after-record" {
        assert!(log.iter().any(|r| r.method == "GET"), "{case}: the unknown outcome was looked up");
    }
}

#[tokio::test]
async fn every_crash_point_crossed_with_every_remote_outcome_ends_with_exactly_one_registration() {
    for point in POINTS {
        for remote in [Remote::Acted, Remote::DidNotAct, Remote::ActedResponseLost] {
            crash_then_recover(point, remote).await;
        }
    }
}

/// A worker paused longer than its lease between its pre-send checks and
/// the request; meanwhile another worker takes the meeting over and
/// registers it. With the simulator's duplicate protection off, a send by
/// the paused worker after it resumes would create a second registration.
#[tokio::test]
async fn a_worker_paused_past_its_lease_right_before_the_send_never_sends() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.allow_duplicates(true);
    let m = meeting(1);
    sim.upsert_meeting(m.clone());
    let short_lease = [("REGSYNC__SYNC__LEASE_TTL_MS", "2000"), ("REGSYNC__GRAPH__TIMEOUT_MS", "500")];
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    regsync::store::migrate(&pool).await.expect("migrated");
    let paused = {
        let (db, sim) = (db.clone(), sim.clone());
        let mut env = short_lease.to_vec();
        env.push(("FAILPOINTS", "before-send=1*sleep(4000)"));
        tokio::task::spawn_blocking(move || regsync_cli(&["once"], &db, &sim, &env))
    };
    // The successor starts once the paused worker's lease has run out.
    let expired = eventually(std::time::Duration::from_secs(30), async || {
        sqlx::query_scalar::<_, bool>(
            "SELECT count(*) FILTER (WHERE state = 'in_flight' AND lease_expires_at < now()) = 1 FROM meetings",
        )
        .fetch_one(&pool)
        .await
        .expect("lease")
    })
    .await;
    assert!(expired, "the paused worker's lease never ran out");
    let successor = {
        let (db, sim) = (db.clone(), sim.clone());
        tokio::task::spawn_blocking(move || regsync_cli(&["once"], &db, &sim, &short_lease)).await.expect("joined")
    };
    let paused = paused.await.expect("joined");

    assert!(successor.status.success(), "{}", String::from_utf8_lossy(&successor.stderr));
    assert!(paused.status.success(), "{}", String::from_utf8_lossy(&paused.stderr));
    let acted_posts = sim.log().iter().filter(|r| r.method == "POST" && r.acted).count();
    assert_eq!(acted_posts, 1, "exactly one registration; log {:?}", sim.log());
    let held = sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered");
    let recorded: Option<String> =
        sqlx::query_scalar("SELECT registration_id FROM ops.meeting_status").fetch_one(&pool).await.expect("row");
    assert_eq!(recorded.as_deref(), Some(held.id.as_str()));
}

/// Registrant crash points, with where they sit: between the intent and the
/// request, between the request and its outcome, and between the recorded
/// enrolment and the write-back.
const REGISTRANT_POINTS: [&str; 4] =
    ["registrant-after-intent", "after-send", "registrant-after-response", "registrant-before-writeback"];

async fn registrant_crash_then_recover(webinar: bool, point: &str, remote: Remote) {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let m = meeting(1);
    sim.upsert_meeting(m.clone());
    sim.put_webinar(&m.online_meeting_id, "published");
    let v1 = sim.endpoints().graph.replace("/beta", "/v1.0");
    let mut env: Vec<(&str, &str)> = vec![
        SHORT_TIMEOUT,
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__WRITEBACK__URL", "/meetings/{meeting_id}/registrants/{registrant_id}/join-link"),
        ("REGSYNC__WRITEBACK__BODY", r#"{"link": "{join_web_url}", "id": "{registration_id}"}"#),
    ];
    if webinar {
        env.extend([
            ("REGSYNC__GRAPH__TARGET", "virtual_event_webinar"),
            ("REGSYNC__GRAPH__BASE_URL", v1.as_str()),
            ("REGSYNC__SOURCE__FIELDS__WEBINAR_ID", "/online_meeting_id"),
            // The simulator lists at once; a create that did not happen is
            // believed absent after a second.
            ("REGSYNC__GRAPH__LIST_SETTLE_SECS", "1"),
        ]);
    }
    let run = |extra: Option<String>| {
        let (db, sim) = (db.clone(), sim.clone());
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.extend(extra.map(|f| ("FAILPOINTS".to_owned(), f)));
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            regsync_cli(&["once"], &db, &sim, &env)
        })
    };
    // The meeting first, then its registrant, so the crash is the registrant's.
    assert!(run(None).await.expect("joined").status.success());
    let person = regsync_sim::SimRegistrant::new(&m.id, 1);
    sim.upsert_registrant(person.clone());
    match remote {
        Remote::Acted => {}
        Remote::DidNotAct => sim.fail_next(Some("POST"), Fault::Status { status: 500, retry_after: None }),
        Remote::ActedResponseLost => sim.fail_next(Some("POST"), Fault::LostResponse),
    }

    // Runs until one reaches the crash point (after a failed create, the
    // retry reaches the write-back only in a later run).
    let mut crashed = false;
    for _ in 0..10 {
        if !run(Some(format!("{point}=return"))).await.expect("joined").status.success() {
            crashed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    sqlx::query(
        "UPDATE registrants SET lease_expires_at = now() - interval '1 second' WHERE lease_expires_at IS NOT NULL",
    )
    .execute(&pool)
    .await
    .expect("leases expire");
    let mut settled = false;
    for _ in 0..20 {
        assert!(run(None).await.expect("joined").status.success());
        settled = sqlx::query_scalar("SELECT bool_and(state = 'synced') FROM registrants")
            .fetch_one(&pool)
            .await
            .expect("state");
        if settled {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    let case = format!("{} {point} × {remote:?}", if webinar { "webinar" } else { "meeting" });
    assert!(crashed, "{case}: a run crashed at the point");
    assert!(settled, "{case}: the registrant settled");
    let (value, written): (Option<String>, bool) = sqlx::query_as(
        "SELECT CASE WHEN $1 THEN registrant_id ELSE join_web_url END, written_back_at IS NOT NULL FROM ops.registrant_status",
    )
    .bind(webinar)
    .fetch_one(&pool)
    .await
    .expect("row");
    let acknowledged: Vec<_> = sim.write_backs().into_iter().filter(|w| w.status == 200).collect();
    let last = acknowledged.last().expect("written back");
    let key = if webinar { "id" } else { "link" };
    assert!(written, "{case}");
    assert_eq!(last.body[key].as_str(), value.as_deref(), "{case}: the platform has the link regsync holds");
    if webinar {
        let held = sim.webinar(&m.online_meeting_id).expect("webinar").registrations;
        let live: Vec<_> = held.iter().filter(|r| r.status == "registered").collect();
        assert_eq!(live.len(), 1, "{case}: exactly one registration: {held:?}");
        assert_eq!(Some(live[0].id.clone()), value, "{case}");
    } else {
        let held = sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
        assert_eq!(held.len(), 1, "{case}: exactly one registrant");
        assert_eq!(Some(held[0].join_web_url.clone()), value, "{case}");
    }
}

#[tokio::test]
async fn every_registrant_crash_point_crossed_with_every_remote_outcome_ends_with_one_registrant_and_its_link_written_back(
) {
    for webinar in [false, true] {
        for point in REGISTRANT_POINTS {
            for remote in [Remote::Acted, Remote::DidNotAct, Remote::ActedResponseLost] {
                registrant_crash_then_recover(webinar, point, remote).await;
            }
        }
    }
}
