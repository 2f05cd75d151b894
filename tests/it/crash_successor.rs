//! The crash-point matrix of what flows back from Teams: `regsync once`
//! aborts at each point of the status read-back and of the attendance
//! write-back (and of the status write-back it leads to); the next runs
//! finish the job — every status and every attendance told the platform,
//! the registration never re-created. Needs `--features failpoints`.

use std::time::Duration;

use regsync_sim::{Sim, SimAttendee, SimMeeting};

use crate::helpers::{fresh_database, meeting, regsync_cli};

const POINTS: [&str; 4] =
    ["readback-after-list", "registrant-before-writeback", "attendance-before-writeback", "attendance-after-writeback"];

/// `(registrant, body)` of each acknowledged write-back carrying `key`.
fn sent(sim: &Sim, key: &str) -> Vec<(String, serde_json::Value)> {
    sim.write_backs()
        .into_iter()
        .filter(|w| w.status == 200 && w.body.get(key).is_some())
        .map(|w| (w.registrant_id, w.body))
        .collect()
}

async fn crash_then_recover(point: &str) {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let ended = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let m = SimMeeting { ends_at: Some(ended), ..meeting(1) };
    sim.upsert_meeting(m.clone());
    sim.put_webinar(&m.online_meeting_id, "published");
    let people = sim.seed_registrants(std::slice::from_ref(&m), 2);
    let v1 = sim.endpoints().graph.replace("/beta", "/v1.0");
    let env: Vec<(&str, &str)> = vec![
        ("REGSYNC__GRAPH__TARGET", "virtual_event_webinar"),
        ("REGSYNC__GRAPH__BASE_URL", v1.as_str()),
        ("REGSYNC__GRAPH__LIST_SETTLE_SECS", "1"),
        ("REGSYNC__SOURCE__FIELDS__WEBINAR_ID", "/online_meeting_id"),
        ("REGSYNC__SOURCE__FIELDS__ENDS_AT", "/ends_at"),
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__REGISTRANTS__STATUS_READBACK_SECS", "1"),
        ("REGSYNC__WRITEBACK__URL", "/meetings/{meeting_id}/registrants/{registrant_id}/join-link"),
        ("REGSYNC__WRITEBACK__BODY", r#"{"id": "{registration_id}"}"#),
        ("REGSYNC__WRITEBACK__STATUS_URL", "/meetings/{meeting_id}/registrants/{registrant_id}/status"),
        ("REGSYNC__ATTENDANCE__ENABLED", "true"),
        ("REGSYNC__ATTENDANCE__DELAY_SECS", "0"),
        ("REGSYNC__ATTENDANCE__REREAD_SECS", "1"),
        ("REGSYNC__ATTENDANCE__WRITEBACK__URL", "/meetings/{meeting_id}/registrants/{registrant_id}/attendance"),
    ];
    let run = |failpoint: Option<String>| {
        let (db, sim) = (db.clone(), sim.clone());
        let mut env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.extend(failpoint.map(|f| ("FAILPOINTS".to_owned(), f)));
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            regsync_cli(&["once"], &db, &sim, &env)
        })
    };
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    // Time passes: every periodic job is due, every claim expired.
    let time_passes = async || {
        for sql in [
            "UPDATE periodic_jobs SET next_run_at = now()",
            "UPDATE attendance_reads SET next_read_at = now()",
            "UPDATE attendance SET lease_expires_at = NULL, next_attempt_at = now()",
            "UPDATE registrants SET lease_expires_at = now() - interval '1 second' WHERE lease_expires_at IS NOT NULL",
        ] {
            sqlx::query(sql).execute(&pool).await.expect("time passes");
        }
    };
    // Registered, and no report yet.
    for _ in 0..3 {
        assert!(run(None).await.expect("joined").status.success());
    }
    let registered = sim.webinar(&m.online_meeting_id).expect("webinar").registrations;
    assert_eq!(registered.len(), 2, "{point}");
    // In Teams: the first cancels; the report comes.
    assert!(sim.change_registration_in_teams(&m.online_meeting_id, &people[0].id, "canceled"));
    let joined = (chrono::Utc::now() - chrono::Duration::minutes(100)).to_rfc3339();
    let left = (chrono::Utc::now() - chrono::Duration::minutes(70)).to_rfc3339();
    sim.put_attendance_report(
        &m.online_meeting_id,
        Duration::ZERO,
        vec![SimAttendee {
            email: people[1].email.clone(),
            intervals: vec![(joined, left, 1800)],
            ..SimAttendee::default()
        }],
    );
    time_passes().await;

    let crashed = !run(Some(format!("{point}=return"))).await.expect("joined").status.success();
    assert!(crashed, "{point}: the run reached the crash point");
    let mut done = false;
    for _ in 0..10 {
        time_passes().await;
        assert!(run(None).await.expect("joined").status.success());
        let statuses = sent(&sim, "status");
        let attendance = sent(&sim, "attended");
        let told = statuses.iter().any(|(id, b)| *id == people[0].id && b["status"] == "cancelled");
        let both = people.iter().all(|p| attendance.iter().any(|(id, _)| *id == p.id));
        if told && both {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(done, "{point}: everything told: {:?}", sim.write_backs());
    let statuses = sent(&sim, "status");
    assert_eq!(statuses.len(), 1, "{point}: the cancellation told once: {statuses:?}");
    let attendance = sent(&sim, "attended");
    for (p, (attended, seconds)) in people.iter().zip([(false, 0), (true, 1800)]) {
        let mine: Vec<_> = attendance.iter().filter(|(id, _)| *id == p.id).map(|(_, b)| b.clone()).collect();
        // A crash after the platform's answer and before it is recorded
        // sends that one again: the same figures, an idempotent PUT.
        let most = if point == "attendance-after-writeback" { 2 } else { 1 };
        assert!((1..=most).contains(&mine.len()), "{point}: {} told {} times", p.id, mine.len());
        assert!(mine.iter().all(|b| b["attended"] == attended && b["seconds"] == seconds), "{point}: {mine:?}");
    }
    let held = sim.webinar(&m.online_meeting_id).expect("webinar").registrations;
    assert_eq!(held.len(), 2, "{point}: no registration re-created: {held:?}");
}

#[tokio::test]
async fn every_crash_point_of_the_read_back_and_the_attendance_ends_with_each_told_the_platform() {
    for point in POINTS {
        crash_then_recover(point).await;
    }
}
