//! The chaos run for the webinar target (CI size): three `regsync run`
//! replicas registering people for webinars while Graph loses answers,
//! times out, throttles, and lists registrations only seconds after it made
//! them (Graph is eventually consistent); replicas are killed at random and
//! restarted, and two meetings are cancelled midway. Judged from the
//! simulator's books: every person of an active webinar registered exactly
//! once, that registration's id written back; nobody left registered for a
//! cancelled one.

use std::time::{Duration, Instant};

use rand::Rng;
use regsync_sim::{FaultRates, Sim, SimMeeting};

use crate::chaos::{open_meetings, Replica};
use crate::helpers::{eventually, fresh_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_at_random_register_every_webinar_registrant_once_under_a_lagging_list() {
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let webinars: Vec<SimMeeting> =
        (1..=8).map(|n| SimMeeting::new(&format!("evt-{n}"), "org-1", &format!("web-{n}"))).collect();
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
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        r.start(&db, &sim);
    }

    let cancelled = &webinars[..2];
    let started = Instant::now();
    let (mut kills, mut cancelled_midway) = (0, false);
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
    }
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    let open_registrants = async || -> Option<i64> {
        sqlx::query_scalar("SELECT count(*) FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight')")
            .fetch_one(&pool)
            .await
            .ok()
    };
    let quiet = eventually(Duration::from_secs(240), async || {
        open_meetings(&pool).await == Some(0) && open_registrants().await == Some(0)
    })
    .await;
    for r in &mut replicas {
        r.terminate();
    }
    assert!(quiet, "not quiescent");

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
        assert_eq!(ours.len(), 1, "{}: exactly one live registration: {ours:?}", p.id);
        let last = write_backs.iter().rev().find(|w| w.registrant_id == p.id && w.status == 200);
        assert_eq!(
            last.map(|w| w.body["registration_id"].as_str()),
            Some(Some(ours[0].id.as_str())),
            "{}: its registration written back",
            p.id
        );
    }
    assert_eq!(sim.stats().requests_inside_retry_after, 0, "no request inside a Retry-After window");
    assert!(kills >= 6 && cancelled_midway);
    for r in &replicas {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        assert!(!text.contains("panicked"), "a replica panicked: {}", r.log.display());
    }
    let _ = std::fs::remove_dir_all(logs);
}
