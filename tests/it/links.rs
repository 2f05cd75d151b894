//! Faults on the links between real processes, made by a user-space relay
//! (`helpers::relay`): regsync's path to Graph slower than its timeout, cut
//! with requests in flight, or half-open. Judged from the simulator's books:
//! one registration per meeting, no create while one existed.

use std::time::Duration;

use regsync_sim::{Sim, SimMeeting};

use crate::helpers::relay::Relay;
use crate::helpers::{fresh_database, meeting, spawn_app_against, TestApp};

/// An app whose Graph is behind a relay; the relay.
async fn behind_relay(timeout_ms: u64) -> (TestApp, Relay) {
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("the simulator");
    let relay = Relay::start(sim.addr()).await;
    let graph = relay.url(&sim.endpoints().graph);
    let app = spawn_app_against(sim, fresh_database().await, |s| {
        s.graph.base_url = graph;
        s.graph.timeout_ms = timeout_ms;
        // Retries back off as a deployment's do (scaled down): a fault of a
        // few seconds spends a few attempts, not all of them.
        s.sync.backoff_base_ms = 200;
        s.sync.backoff_max_ms = 2_000;
    })
    .await;
    (app, relay)
}

/// Once the path heals and the app settles: every meeting synced and
/// registered once, and no create sent while a registration existed.
async fn heal_and_register_once(app: &TestApp, relay: &Relay, meetings: &[SimMeeting]) {
    relay.heal();
    app.settle().await;
    for m in meetings {
        let status = app.status(&m.id).await;
        assert_eq!(status.state, "synced", "{}: {:?}", m.id, status.last_error);
    }
    let stats = app.sim.stats();
    assert_eq!(stats.posts_while_registered, 0, "a create while a registration existed: {stats:?}");
    assert_eq!(stats.registrations, meetings.len(), "{stats:?}");
}

#[tokio::test]
async fn latency_of_2s_to_graph_with_a_1s_timeout_produces_no_duplicate() {
    let (app, relay) = behind_relay(1_000).await;
    let meetings: Vec<_> = (1..=5).map(|n| app.listed(meeting(n))).collect();
    relay.delay(Duration::from_secs(2), Duration::from_millis(500));
    // Every request times out while its bytes are still on their way.
    for _ in 0..4 {
        app.tick().await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    heal_and_register_once(&app, &relay, &meetings).await;
}

#[tokio::test]
async fn a_path_to_graph_cut_with_requests_in_flight_resolves_every_unknown_outcome_once_it_heals() {
    let (app, relay) = behind_relay(1_000).await;
    let meetings: Vec<_> = (1..=5).map(|n| app.listed(meeting(n))).collect();
    regsync::sync::ingest::poll(&app.ctx).await.expect("listed while the path is whole");
    // The creates leave, the answers do not come back.
    relay.cut(false, true);
    app.reconcile().await;
    let unknown = app.scalar("SELECT count(*) FROM meetings WHERE needs_lookup").await;
    assert!(unknown > 0, "writes whose outcome is unknown");
    heal_and_register_once(&app, &relay, &meetings).await;
    let lookups = app.sim.log().iter().filter(|r| r.method == "GET").count();
    assert!(lookups >= usize::try_from(unknown).unwrap(), "each unknown outcome looked up: {lookups} < {unknown}");
}

#[tokio::test]
async fn a_half_open_path_to_graph_is_given_up_on_within_the_timeout_and_nothing_is_sent_twice() {
    let (app, relay) = behind_relay(1_000).await;
    let meetings: Vec<_> = (1..=3).map(|n| app.listed(meeting(n))).collect();
    regsync::sync::ingest::poll(&app.ctx).await.expect("listed while the path is whole");
    // Both ways silent, no reset: only the timeout ends a request.
    relay.cut(true, true);
    let started = std::time::Instant::now();
    app.reconcile().await;
    assert!(started.elapsed() < Duration::from_secs(30), "a half-open path holds a reconcile {:?}", started.elapsed());
    heal_and_register_once(&app, &relay, &meetings).await;
}

#[tokio::test]
async fn a_half_open_path_to_postgresql_is_given_up_on_in_bounded_time_and_nothing_reaches_graph_meanwhile() {
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("the simulator");
    let db = fresh_database().await;
    let relay = Relay::to_server_of(&db).await;
    let through_relay = relay.url(&db);
    let app = spawn_app_against(sim, through_relay, |s| {
        s.database.statement_timeout_ms = 1_000;
        s.database.acquire_timeout_ms = 2_000;
    })
    .await;
    let first = app.listed(meeting(1));
    app.tick().await;
    assert_eq!(app.status(&first.id).await.state, "synced");
    let meetings = [first, app.listed(meeting(2))];
    regsync::sync::ingest::poll(&app.ctx).await.expect("listed while the path is whole");
    let sent_before = app.sim.log().len();

    // The database goes silent (no reset, no answer) while a statement is
    // on its way: the connection was taken and checked, then the answer
    // never comes.
    relay.delay(Duration::from_millis(300), Duration::ZERO);
    let started = std::time::Instant::now();
    let ctx = app.ctx.clone();
    let reconcile =
        tokio::spawn(
            async move { tokio::time::timeout(Duration::from_secs(60), regsync::sync::reconcile_due(&ctx)).await },
        );
    tokio::time::sleep(Duration::from_millis(900)).await;
    relay.cut(true, true);
    let bounded = reconcile.await.expect("joined");
    let took = started.elapsed();
    assert!(bounded.is_ok() && took < Duration::from_secs(20), "a reconcile waited {took:?} on a silent database");
    assert_eq!(app.sim.log().len(), sent_before, "nothing sent to Graph without its intent committed");

    heal_and_register_once(&app, &relay, &meetings).await;
}
