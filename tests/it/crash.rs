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
