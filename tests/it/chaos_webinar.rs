//! The chaos run for the webinar target (CI size): three `regsync run`
//! replicas registering people for webinars while Graph loses answers,
//! times out, throttles, and lists registrations only seconds after it made
//! them (Graph is eventually consistent); replicas are killed at random and
//! restarted, and two meetings are cancelled midway. Judged from the
//! simulator's books: every person of an active webinar registered exactly
//! once, that registration's id written back; nobody left registered for a
//! cancelled one. Midway, people cancel in Teams and the webinars' attendance
//! reports come: each cancellation reaches the platform and is not undone,
//! and every registrant's attendance is written back with its figures.

use std::time::{Duration, Instant};

use rand::Rng;
use regsync_sim::{FaultRates, Sim, SimMeeting};

use crate::chaos::{open_meetings, Replica};
use crate::helpers::{eventually, fresh_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_at_random_register_every_webinar_registrant_once_under_a_lagging_list() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let ended = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let webinars: Vec<SimMeeting> = (1..=8)
        .map(|n| SimMeeting {
            ends_at: Some(ended.clone()),
            ..SimMeeting::new(&format!("evt-{n}"), "org-1", &format!("web-{n}"))
        })
        .collect();
    for m in &webinars {
        sim.upsert_meeting(m.clone());
        sim.put_webinar(&m.online_meeting_id, "published");
    }
    let people = sim.seed_registrants(&webinars, 3);
    sim.lag_webinar_list(Duration::from_secs(3));
    sim.set_rates(FaultRates {
        throttle: 0.05,
        retry_after_secs: 0.5,
        error: 0.05,
        lost_response: 0.1,
        timeout: 0.05,
        timeout_delay: Duration::from_millis(1_500),
        latency: Duration::from_millis(5),
    });
    let graph = sim.endpoints().graph.replace("/beta", "/v1.0");
    let logs = std::env::temp_dir().join(format!("regsync-chaos-webinar-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut replicas: Vec<Replica> = (0..3).map(|i| Replica::new(logs.join(format!("replica-{i}.log")))).collect();
    for r in &mut replicas {
        r.extra_env.extend(
            [
                ("REGSYNC__GRAPH__TARGET", "virtual_event_webinar"),
                ("REGSYNC__GRAPH__BASE_URL", graph.as_str()),
                ("REGSYNC__GRAPH__LIST_SETTLE_SECS", "8"),
                ("REGSYNC__SOURCE__FIELDS__WEBINAR_ID", "/online_meeting_id"),
                ("REGSYNC__REGISTRANTS__ENABLED", "true"),
                ("REGSYNC__REGISTRANTS__PATH", "/registrants"),
                ("REGSYNC__WRITEBACK__URL", "/meetings/{meeting_id}/registrants/{registrant_id}/join-link"),
                ("REGSYNC__WRITEBACK__BODY", r#"{"registration_id": "{registration_id}"}"#),
                ("REGSYNC__WRITEBACK__STATUS_URL", "/meetings/{meeting_id}/registrants/{registrant_id}/status"),
                ("REGSYNC__REGISTRANTS__STATUS_READBACK_SECS", "2"),
                ("REGSYNC__SOURCE__FIELDS__ENDS_AT", "/ends_at"),
                ("REGSYNC__ATTENDANCE__ENABLED", "true"),
                ("REGSYNC__ATTENDANCE__DELAY_SECS", "0"),
                ("REGSYNC__ATTENDANCE__REREAD_SECS", "2"),
                (
                    "REGSYNC__ATTENDANCE__WRITEBACK__URL",
                    "/meetings/{meeting_id}/registrants/{registrant_id}/attendance",
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        r.start(&db, &sim);
    }

    let cancelled = &webinars[..2];
    // Of the active webinars' people, one per webinar cancels in Teams;
    // every one attends for a time of their own.
    let active: Vec<&regsync_sim::SimRegistrant> =
        people.iter().filter(|p| !cancelled.iter().any(|c| c.id == p.meeting_id)).collect();
    // Those whose registration Teams held when they cancelled there.
    let mut quit: Vec<String> = Vec::new();
    let seconds_of = |p: &regsync_sim::SimRegistrant| 60 * (p.id.len() as u64 % 7 + 1);
    let started = Instant::now();
    let (mut kills, mut cancelled_midway, mut teams_midway) = (0, false, false);
    while started.elapsed() < Duration::from_secs(20) || kills < 6 {
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(1_000..2_500))).await;
        let victim = rand::rng().random_range(0..replicas.len());
        replicas[victim].kill();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(100..1_000))).await;
        replicas[victim].start(&db, &sim);
        if !cancelled_midway && started.elapsed() > Duration::from_secs(8) {
            cancelled_midway = true;
            for m in cancelled {
                sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
            }
        }
        // Once registered, some cancel in Teams and the reports come.
        if !teams_midway && started.elapsed() > Duration::from_secs(14) {
            teams_midway = true;
            for p in active.iter().filter(|p| p.id.ends_with("p001")) {
                let m = webinars.iter().find(|m| m.id == p.meeting_id).expect("their webinar");
                if sim.change_registration_in_teams(&m.online_meeting_id, &p.id, "canceled") {
                    quit.push(p.id.clone());
                }
            }
            for m in &webinars[2..] {
                let records = active
                    .iter()
                    .filter(|p| p.meeting_id == m.id)
                    .map(|p| regsync_sim::SimAttendee {
                        email: p.email.clone(),
                        intervals: vec![(ended.clone(), ended.clone(), seconds_of(p))],
                        ..regsync_sim::SimAttendee::default()
                    })
                    .collect();
                sim.put_attendance_report(&m.online_meeting_id, Duration::ZERO, records);
            }
        }
    }
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    let open_registrants = async || -> Option<i64> {
        sqlx::query_scalar("SELECT count(*) FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight')")
            .fetch_one(&pool)
            .await
            .ok()
    };
    // Done: nothing open, and every active registrant's attendance (and
    // each cancellation made in Teams) acknowledged by the platform.
    let acknowledged = |key: &str| -> std::collections::HashSet<String> {
        sim.write_backs()
            .into_iter()
            .filter(|w| w.status == 200 && w.body.get(key).is_some())
            .map(|w| w.registrant_id)
            .collect()
    };
    let quiet = eventually(Duration::from_secs(240), async || {
        let everyone = active.iter().all(|p| acknowledged("attended").contains(&p.id));
        let told = quit.iter().all(|p| acknowledged("status").contains(p));
        everyone && told && open_meetings(&pool).await == Some(0) && open_registrants().await == Some(0)
    })
    .await;
    for r in &mut replicas {
        r.terminate();
    }
    let unattended: Vec<&String> =
        active.iter().map(|p| &p.id).filter(|p| !acknowledged("attended").contains(*p)).collect();
    let untold: Vec<&String> = quit.iter().filter(|p| !acknowledged("status").contains(*p)).collect();
    assert!(
        quiet,
        "not quiescent: meetings open {:?}, registrants open {:?}, attendance missing {unattended:?}, statuses \
         missing {untold:?} of {quit:?}",
        open_meetings(&pool).await,
        open_registrants().await
    );
    assert!(!quit.is_empty(), "someone cancelled in Teams");

    let write_backs = sim.write_backs();
    for p in &people {
        let m = webinars.iter().find(|m| m.id == p.meeting_id).expect("their webinar");
        let ours: Vec<_> = sim
            .webinar(&m.online_meeting_id)
            .map(|w| w.registrations)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.external_id == p.id && r.status == "registered")
            .collect();
        if cancelled.iter().any(|c| c.id == m.id) {
            assert!(ours.is_empty(), "{}: left registered for a cancelled meeting", p.id);
            continue;
        }
        let last_attendance =
            write_backs.iter().rev().find(|w| w.registrant_id == p.id && w.body.get("attended").is_some());
        assert_eq!(
            last_attendance.map(|w| (w.body["attended"].clone(), w.body["seconds"].clone())),
            Some((serde_json::json!(true), serde_json::json!(seconds_of(p)))),
            "{}: attendance written back",
            p.id
        );
        if quit.contains(&p.id) {
            assert!(ours.is_empty(), "{}: the cancellation made in Teams was undone", p.id);
            let told = write_backs.iter().rev().find(|w| w.registrant_id == p.id && w.body.get("status").is_some());
            assert_eq!(told.map(|w| w.body["status"].clone()), Some(serde_json::json!("cancelled")), "{}", p.id);
            continue;
        }
        assert_eq!(ours.len(), 1, "{}: exactly one live registration: {ours:?}", p.id);
        let last = write_backs
            .iter()
            .rev()
            .find(|w| w.registrant_id == p.id && w.status == 200 && w.body.get("registration_id").is_some());
        assert_eq!(
            last.map(|w| w.body["registration_id"].as_str()),
            Some(Some(ours[0].id.as_str())),
            "{}: its registration written back",
            p.id
        );
    }
    assert_eq!(sim.stats().requests_inside_retry_after, 0, "no request inside a Retry-After window");
    assert!(kills >= 6 && cancelled_midway && teams_midway);
    for r in &replicas {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        assert!(!text.contains("panicked"), "a replica panicked: {}", r.log.display());
    }
    let _ = std::fs::remove_dir_all(logs);
}
