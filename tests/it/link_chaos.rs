//! The network-fault run: three `regsync run` replicas, each reaching the
//! simulator (platform, identity platform, Graph) and PostgreSQL through
//! relays of its own (`helpers::relay`), while a seeded schedule makes the
//! links lie — latency and jitter up to seconds, one-way and two-way cuts,
//! half-open links — kills replicas, and crashes PostgreSQL (a cluster of
//! the run's own) and starts it again. After the faults heal, judged from
//! the books: every meeting and every person converged, no create while a
//! registration existed, no request inside a Retry-After window, no
//! registration left for a cancelled meeting, no replica panicked.
//!
//! The short form runs in CI; the long form:
//! `REGSYNC_LINK_SECS=600 REGSYNC_LINK_MEETINGS=2000 REGSYNC_LINK_PEOPLE=1000 \
//!  cargo test --release --all-features --test it -- --include-ignored link_chaos`

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use regsync_sim::devdb::Cluster;
use regsync_sim::{FaultRates, Sim, SimMeeting, SimRegistrant};

use crate::chaos::{env_number, open_meetings, Replica};
use crate::helpers::eventually;
use crate::helpers::relay::Relay;

/// A replica's two links: to the simulator and to PostgreSQL.
struct Links {
    internet: Relay,
    database: Relay,
}

/// One fault on one link, drawn from `rng`.
fn strike(rng: &mut rand::rngs::StdRng, link: &Relay) -> &'static str {
    match rng.random_range(0..6) {
        0 => {
            link.delay(Duration::from_millis(rng.random_range(200..2_500)), Duration::from_millis(300));
            "latency"
        }
        1 => {
            link.cut(true, false);
            "cut one way (requests)"
        }
        2 => {
            link.cut(false, true);
            "cut one way (answers)"
        }
        3 => {
            link.cut(true, true);
            "half-open"
        }
        _ => {
            link.heal();
            "healed"
        }
    }
}

async fn run(seconds: u64, meetings: usize, people: usize) {
    let seed = env_number("REGSYNC_LINK_SEED", 7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // A PostgreSQL of the run's own: it crashes.
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await.expect("joined").expect("own PostgreSQL");
    let db = cluster.url().to_owned();
    let pg_port = cluster.port();
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let all: Vec<SimMeeting> = (1..=meetings).map(SimMeeting::generated).collect();
    for m in &all {
        sim.upsert_meeting(m.clone());
    }
    let open: Vec<SimMeeting> =
        all.iter().filter(|m| m.status == "active" && m.allowed_registrant == "everyone").cloned().collect();
    // Two people each for as many open meetings as it takes.
    let people: Vec<SimRegistrant> = sim.seed_registrants(&open[..(people / 2).min(open.len())], 2);
    // Slow enough that the faults meet work under way.
    sim.set_rates(FaultRates {
        throttle: 0.01,
        retry_after_secs: 0.5,
        error: 0.02,
        latency: Duration::from_millis(300),
        ..FaultRates::default()
    });

    let logs = std::env::temp_dir().join(format!("regsync-links-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut links = Vec::new();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let internet = Relay::start(sim.addr()).await;
        let database = Relay::start(([127, 0, 0, 1], pg_port).into()).await;
        let mut replica = Replica::new(logs.join(format!("replica-{i}.log")));
        let at = sim.endpoints();
        replica.extra_env.extend(
            [
                ("DATABASE_URL", database.url(&db)),
                ("REGSYNC__SOURCE__BASE_URL", internet.url(&at.platform)),
                ("REGSYNC__GRAPH__BASE_URL", internet.url(&at.graph)),
                ("REGSYNC__GRAPH__AUTHORITY_URL", internet.url(&at.authority)),
                ("REGSYNC__GRAPH__TIMEOUT_MS", "1000".into()),
                ("REGSYNC__SYNC__LEASE_TTL_MS", "4000".into()),
                ("REGSYNC__DATABASE__STATEMENT_TIMEOUT_MS", "2000".into()),
                ("REGSYNC__REGISTRANTS__ENABLED", "true".into()),
                ("REGSYNC__REGISTRANTS__PATH", "/registrants".into()),
                ("REGSYNC__WRITEBACK__URL", "/meetings/{meeting_id}/registrants/{registrant_id}/join-link".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        replica.start(&db, &sim);
        replicas.push(replica);
        links.push(Links { internet, database });
    }

    let working = eventually(Duration::from_secs(30), async || sim.stats().tokens_issued > 0).await;
    assert!(working, "no replica reached the simulator: see {}", logs.display());
    let started = Instant::now();
    let (mut faults, mut kills, mut db_crashes) = (0, 0, 0);
    let mut not_ready_during_outage = Vec::new();
    let cancelled: Vec<&SimMeeting> = open.iter().take(3).collect();
    let mut cancelled_midway = false;
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_000))).await;
        let i = rng.random_range(0..replicas.len());
        match rng.random_range(0..12) {
            11 => {
                cluster.crash();
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
                // /readyz tells the truth while the database is down.
                let listen = replicas[i].listen.clone();
                let ready = reqwest::get(format!("http://{listen}/readyz")).await.ok().map(|r| r.status().as_u16());
                not_ready_during_outage.push(ready);
                cluster = tokio::task::spawn_blocking(move || {
                    cluster.start_again().expect("PostgreSQL back");
                    cluster
                })
                .await
                .expect("joined");
                db_crashes += 1;
            }
            0 => {
                replicas[i].kill();
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
                replicas[i].start(&db, &sim);
                kills += 1;
            }
            1..=5 => {
                strike(&mut rng, &links[i].internet);
                faults += 1;
            }
            6..=10 => {
                strike(&mut rng, &links[i].database);
                faults += 1;
            }
            _ => unreachable!("drawn from 0..12"),
        }
        if !cancelled_midway && started.elapsed() > Duration::from_secs(seconds / 2) {
            cancelled_midway = true;
            for m in &cancelled {
                sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
            }
        }
    }
    for l in &links {
        l.internet.heal();
        l.database.heal();
    }
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    let open_people = async || -> Option<i64> {
        sqlx::query_scalar("SELECT count(*) FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight')")
            .fetch_one(&pool)
            .await
            .ok()
    };
    let quiet = eventually(Duration::from_secs(300), async || {
        open_meetings(&pool).await == Some(0) && open_people().await == Some(0)
    })
    .await;
    for r in &mut replicas {
        r.terminate();
    }
    let stats = sim.stats();
    println!(
        "link chaos: seed {seed}, {seconds} s, {meetings} meetings, {} people, {faults} link faults, {kills} kills, \
         {db_crashes} database crashes (/readyz during them: {not_ready_during_outage:?}); {stats:?}",
        people.len()
    );
    assert!(quiet, "not quiescent: meetings {:?}, people {:?}", open_meetings(&pool).await, open_people().await);
    assert_eq!(stats.posts_while_registered, 0, "a create while a registration existed");
    assert_eq!(stats.requests_inside_retry_after, 0, "a request inside a Retry-After window");
    // A replica whose link was cut may not answer at all; one that answers
    // says it is not ready.
    assert!(
        not_ready_during_outage.iter().all(|s| s.is_none_or(|s| s == 503)),
        "/readyz said ready while the database was down: {not_ready_during_outage:?}"
    );
    for m in &open {
        let held = sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
        if cancelled.iter().any(|c| c.id == m.id) {
            assert!(held.is_empty(), "{}: people left at a cancelled meeting", m.id);
            continue;
        }
        let mine: Vec<_> = people.iter().filter(|p| p.meeting_id == m.id).collect();
        assert_eq!(held.len(), mine.len(), "{}: each person enrolled once: {held:?}", m.id);
    }
    for r in &replicas {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        assert!(!text.contains("panicked"), "a replica panicked: {}", r.log.display());
    }
    let _ = std::fs::remove_dir_all(logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_lying_links_converge_with_nothing_twice_and_no_one_lost() {
    let (seconds, meetings) = (env_number("REGSYNC_LINK_SECS", 25), env_number("REGSYNC_LINK_MEETINGS", 120));
    run(seconds, meetings as usize, env_number("REGSYNC_LINK_PEOPLE", 180) as usize).await;
}
