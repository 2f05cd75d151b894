//! A replica partitioned from PostgreSQL while it sends: what it already
//! let through its gate may still leave, within its permit (half the lease
//! from the gate); nothing after. Another replica takes its meetings over
//! once their leases lapse, looks up what was left unknown and registers
//! the rest: each meeting once.

use std::sync::Arc;
use std::time::Duration;

use regsync::sync;
use regsync_sim::{FaultRates, Sim};
use tokio_util::sync::CancellationToken;

use crate::helpers::relay::Relay;
use crate::helpers::{eventually, fresh_database, meeting, spawn_app_against};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_partitioned_from_postgresql_mid_send_stops_within_its_permit_while_another_takes_over() {
    // Arrange: replica A reaches PostgreSQL and Graph through relays of its
    // own; replica B reaches both directly.
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("the simulator");
    sim.set_rates(FaultRates { latency: Duration::from_millis(400), ..FaultRates::default() });
    let db = fresh_database().await;
    let database = Relay::to_server_of(&db).await;
    let graph = Relay::start(sim.addr()).await;
    let direct_graph = sim.endpoints().graph;
    let lease = Duration::from_millis(4_000);
    let a = spawn_app_against(sim, database.url(&db), |s| {
        s.graph.base_url = graph.url(&s.graph.base_url);
        s.graph.timeout_ms = 1_000;
        s.graph.max_concurrency = 4;
        s.sync.lease_ttl_ms = lease.as_millis() as u64;
        s.database.statement_timeout_ms = 1_000;
        s.database.acquire_timeout_ms = 2_000;
        s.sync.backoff_base_ms = 100;
        s.sync.backoff_max_ms = 500;
    })
    .await;
    let mut direct = a.settings.clone();
    direct.database.url = Some(db.clone().into());
    direct.graph.base_url = direct_graph;
    let b_pool = regsync::app::connect_and_migrate(&direct).await.expect("B's pool");
    let b = regsync::app::context(Arc::new(direct), b_pool, Arc::default(), CancellationToken::new()).expect("B");
    let meetings: Vec<_> = (1..=24).map(|n| a.listed(meeting(n))).collect();
    sync::ingest::poll(&b).await.expect("listed");

    // Act: A sends; its database path falls silent with work under way.
    let a_ctx = a.ctx.clone();
    let sending = tokio::spawn(async move {
        for _ in 0..200 {
            let _ = sync::reconcile_due(&a_ctx).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let under_way = eventually(Duration::from_secs(30), async || a.sim.stats().registrations >= 3).await;
    assert!(under_way, "A registers meetings");
    database.cut(true, true);
    let cut_at = tokio::time::Instant::now();
    let taken_over = eventually(Duration::from_secs(120), async || {
        let _ = sync::reconcile_due(&b).await;
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM meetings WHERE state <> 'synced'")
            .fetch_one(&b.pool)
            .await
            .is_ok_and(|open| open == 0)
    })
    .await;
    let last_from_a = graph.last_delivered().expect("A sent requests");
    sending.abort();

    // Assert
    assert!(taken_over, "B registers every meeting A left");
    // A request A let through its gate just before the cut may leave up to
    // half a lease later; its bytes reach Graph at once (no delay on A's
    // Graph path). A second of slack for a busy machine.
    let since_cut = last_from_a.saturating_duration_since(cut_at);
    assert!(since_cut <= lease / 2 + Duration::from_secs(1), "A still sent {since_cut:?} after the cut");
    let stats = a.sim.stats();
    assert_eq!(stats.registrations, meetings.len(), "each meeting registered once: {stats:?}");
    assert_eq!(stats.posts_while_registered, 0, "a create while a registration existed: {stats:?}");
}
