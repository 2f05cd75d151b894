//! A database failover under load: the primary crashes while regsync's
//! writes are in flight, its streaming standby is promoted and the
//! database's service address (a relay, as a managed database's endpoint)
//! moves to it. With synchronous replication no committed intent is lost:
//! every meeting is registered once, no create repeated, without a restart;
//! with asynchronous replication a lost intent is a write regsync sends
//! again, which Graph's 409 and the lookup turn into an adoption.

use std::time::Duration;

use regsync_sim::{devdb::Cluster, FaultRates, Sim};

use crate::helpers::relay::Relay;
use crate::helpers::{meeting, spawn_app_against};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_with_synchronous_replication_loses_no_committed_intent_and_creates_nothing_twice() {
    let repeated = failover(true).await;
    assert_eq!(repeated, 0, "no create repeated: every committed intent survived");
}

/// With asynchronous replication, intents the standby had not received are
/// lost with the primary: regsync does not remember those writes and sends
/// them again; Graph answers 409 for a meeting that has its registration,
/// and regsync looks it up and adopts it. Nothing is created twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_with_asynchronous_replication_may_repeat_a_lost_write_but_creates_nothing_twice() {
    let repeated = failover(false).await;
    eprintln!("creates repeated after intents lost in the failover: {repeated}");
}

/// Waits until the primary at `primary` streams to its standby; with
/// `synchronous`, its commits wait for the standby from then on.
pub async fn standby_streams(primary: &str, synchronous: bool) {
    let admin = sqlx::PgPool::connect(primary).await.expect("the primary");
    let streaming = crate::helpers::eventually(Duration::from_secs(30), async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
            .fetch_one(&admin)
            .await
            .is_ok_and(|n| n == 1)
    });
    assert!(streaming.await, "the standby streams");
    if synchronous {
        sqlx::query("ALTER SYSTEM SET synchronous_standby_names = '*'").execute(&admin).await.expect("synchronous");
        sqlx::query("SELECT pg_reload_conf()").execute(&admin).await.expect("reloaded");
    }
    admin.close().await;
}

/// A failover mid-work; how many creates met a registration that existed.
async fn failover(synchronous: bool) -> u64 {
    let primary = tokio::task::spawn_blocking(Cluster::start).await.expect("joined").expect("a primary");
    let primary_url = primary.url().to_owned();
    let primary = std::sync::Arc::new(std::sync::Mutex::new(primary));
    let standby = {
        let primary = primary.clone();
        tokio::task::spawn_blocking(move || primary.lock().unwrap().standby())
            .await
            .expect("joined")
            .expect("a standby")
    };
    standby_streams(&primary_url, synchronous).await;

    let primary_port = primary.lock().unwrap().port();
    let service = Relay::start(([127, 0, 0, 1], primary_port).into()).await;
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("the simulator");
    sim.set_rates(FaultRates { latency: Duration::from_millis(100), ..FaultRates::default() });
    let app = spawn_app_against(sim, service.url(&primary_url), |s| {
        s.database.acquire_timeout_ms = 2_000;
        s.database.statement_timeout_ms = 2_000;
        s.sync.backoff_base_ms = 100;
        s.sync.backoff_max_ms = 1_000;
    })
    .await;
    let meetings: Vec<_> = (1..=80).map(|n| app.listed(meeting(n))).collect();
    regsync::sync::ingest::poll(&app.ctx).await.expect("listed");

    // Reconciling while the primary dies.
    let ctx = app.ctx.clone();
    let worker = tokio::spawn(async move {
        for _ in 0..40 {
            let _ = regsync::sync::reconcile_due(&ctx).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Until the first registrations are made: the rest are in flight or due.
    let started = crate::helpers::eventually(Duration::from_secs(30), async || app.sim.stats().registrations >= 5);
    assert!(started.await, "registrations under way");
    let crashed = primary.clone();
    tokio::task::spawn_blocking(move || crashed.lock().unwrap().crash()).await.expect("joined");
    let promoted = sqlx::PgPool::connect(standby.url()).await.expect("the standby");
    sqlx::query("SELECT pg_promote()").execute(&promoted).await.expect("promoted");
    promoted.close().await;
    service.retarget(([127, 0, 0, 1], standby.port()).into());
    let at_failover = app.sim.stats().registrations;
    assert!(at_failover < meetings.len(), "the failover came mid-work ({at_failover} registered)");
    worker.await.expect("joined");

    // The pool recovers on its own: no restart.
    let settled = crate::helpers::eventually(Duration::from_secs(90), async || {
        let _ = regsync::sync::reconcile_due(&app.ctx).await;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM meetings WHERE state <> 'synced'")
            .fetch_one(&app.pool)
            .await
            .is_ok_and(|open| open == 0)
    });
    assert!(settled.await, "every meeting settles after the failover");
    let stats = app.sim.stats();
    // One registration per meeting: a repeated create met a 409, never a
    // second registration.
    assert_eq!(stats.registrations, meetings.len(), "every meeting registered once: {stats:?}");
    stats.posts_while_registered
}
