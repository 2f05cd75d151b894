//! The reliability designs too long for every CI run (docs/reliability.md):
//! a replica paused past its lease, five replicas draining 10,000 meetings,
//! and replicas whose wall clocks are ten minutes apart (needs `faketime`). Run them
//! with the large chaos run by one command (README, "Long reliability runs"):
//!
//! `REGSYNC_CHAOS_MEETINGS=2000 REGSYNC_CHAOS_SECS=600 cargo test --release --all-features --test it -- --include-ignored chaos nightly`

use std::time::{Duration, Instant};

use regsync::sync;
use regsync_sim::{FaultRates, Sim, SimMeeting};

use crate::chaos::{open_meetings, Replica};
use crate::helpers::{eventually, fresh_database, spawn_app_with, Signal};

fn acted_posts_per_meeting(sim: &Sim, meetings: &[SimMeeting]) -> Vec<usize> {
    let log = sim.log();
    meetings
        .iter()
        .map(|m| {
            log.iter()
                .filter(|r| {
                    r.method == "POST" && r.acted && r.organizer == m.organizer_id && r.meeting == m.online_meeting_id
                })
                .count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with --include-ignored"]
async fn five_replicas_of_eight_workers_drain_ten_thousand_meetings_with_one_post_each() {
    let app = spawn_app_with(|s| {
        s.graph.max_concurrency = 8;
        s.database.max_connections = 20;
    })
    .await;
    let n = 10_000;
    app.sim.seed(n);
    app.sim.set_rates(FaultRates { latency: Duration::from_millis(50), ..FaultRates::default() });
    sync::ingest::poll(&app.ctx).await.expect("poll");
    let replicas: Vec<_> = (0..5).map(|_| app.replica()).collect();

    let started = Instant::now();
    let runs: Vec<_> = replicas
        .iter()
        .map(|ctx| {
            let ctx = ctx.clone();
            tokio::spawn(async move { sync::reconcile_due(&ctx).await })
        })
        .collect();
    let mut errors = Vec::new();
    for r in runs {
        if let Err(e) = r.await.expect("joined") {
            errors.push(e.to_string());
        }
    }
    let drain = started.elapsed();

    let valid: Vec<SimMeeting> = (1..=n).map(SimMeeting::generated).filter(|m| m.status == "active").collect();
    assert!(errors.is_empty(), "no deadlock or serialization error surfaced: {errors:?}");
    assert!(acted_posts_per_meeting(&app.sim, &valid).iter().all(|&p| p == 1), "one POST per meeting");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state <> 'synced'").await, 0);
    println!(
        "t6: drained {n} meetings in {drain:?} (bound 60 s, theoretical {:?})",
        Duration::from_millis(50) * (n as u32 * 9 / 10) / 40
    );
    assert!(drain < Duration::from_secs(60));
}

async fn replicas_until_quiet(db: &str, sim: &Sim, replicas: &mut [Replica], pause: impl AsyncFnOnce(&mut [Replica])) {
    for r in replicas.iter_mut() {
        r.start(db, sim);
    }
    pause(replicas).await;
    let pool = sqlx::PgPool::connect(db).await.expect("db");
    let quiet = eventually(Duration::from_secs(120), async || {
        open_meetings(&pool).await == Some(0) && sim.stats().platform_meetings > 0
    })
    .await;
    assert!(quiet, "not quiet");
    // Let a paused replica's late writes land before judging.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for r in replicas.iter_mut() {
        assert!(r.terminate().is_some_and(|s| s.success()), "clean stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: run with --include-ignored"]
async fn a_replica_paused_past_its_lease_neither_duplicates_nor_overwrites() {
    for trial in 0..10 {
        for enforce_uniqueness in [true, false] {
            let db = fresh_database().await;
            let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
            sim.seed(40);
            sim.allow_duplicates(!enforce_uniqueness);
            sim.set_rates(FaultRates { latency: Duration::from_millis(300), ..FaultRates::default() });
            let logs = std::env::temp_dir().join(format!("regsync-t4-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&logs).expect("logs");
            let mut replicas = vec![Replica::new(logs.join("a.log")), Replica::new(logs.join("b.log"))];

            replicas_until_quiet(&db, &sim, &mut replicas, async |replicas: &mut [Replica]| {
                // Pause A at a random moment while it holds leases, for two lease lifetimes.
                tokio::time::sleep(Duration::from_millis(500 + 137 * trial)).await;
                replicas[0].signal(Signal::SIGSTOP);
                tokio::time::sleep(Duration::from_secs(4)).await;
                replicas[0].signal(Signal::SIGCONT);
            })
            .await;

            let valid: Vec<SimMeeting> = (1..=40).map(SimMeeting::generated).filter(|m| m.status == "active").collect();
            let posts = acted_posts_per_meeting(&sim, &valid);
            assert!(posts.iter().all(|&p| p == 1), "trial {trial}, uniqueness {enforce_uniqueness}: {posts:?}");
            assert_eq!(sim.stats().posts_while_registered, 0);
            let _ = std::fs::remove_dir_all(logs);
        }
    }
}

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs faketime (apt-get install faketime); run with --include-ignored"]
async fn replicas_with_wall_clocks_ten_minutes_apart_never_rescue_early() {
    assert!(std::path::Path::new(LIBFAKETIME).exists(), "install libfaketime: apt-get install faketime");
    let db = fresh_database().await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(300);
    sim.set_rates(FaultRates { latency: Duration::from_millis(50), ..FaultRates::default() });
    let logs = std::env::temp_dir().join(format!("regsync-t10-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("logs");
    let mut replicas: Vec<Replica> = ["+10m", "-10m"]
        .iter()
        .enumerate()
        .map(|(i, skew)| {
            let mut r = Replica::new(logs.join(format!("r{i}.log")));
            // libfaketime moves only the wall clock; the monotonic clock stays true.
            r.extra_env = vec![
                ("LD_PRELOAD".into(), LIBFAKETIME.into()),
                ("FAKETIME".into(), skew.to_string()),
                ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ];
            r
        })
        .collect();

    replicas_until_quiet(&db, &sim, &mut replicas, async |_: &mut [Replica]| {}).await;

    let valid: Vec<SimMeeting> = (1..=300).map(SimMeeting::generated).filter(|m| m.status == "active").collect();
    assert!(acted_posts_per_meeting(&sim, &valid).iter().all(|&p| p == 1));
    assert_eq!(sim.log().iter().filter(|r| r.method == "GET").count(), 0, "no lease was taken over early (no lookups)");
    let _ = std::fs::remove_dir_all(logs);
}
