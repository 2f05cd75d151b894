//! Faults on a real network path (`helpers::netns`): regsync and the
//! simulator in a network namespace of their own, the path between them cut
//! and healed while regsync's requests are on the wire.

use std::time::Duration;

use regsync_sim::Sim;

use crate::helpers::netns::{over_unix_socket, Netns};
use crate::helpers::{fresh_database, meeting, spawn_app_against};

/// A fresh test database, created from outside the namespace and reached
/// from inside it.
fn database() -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    over_unix_socket(&runtime.block_on(fresh_database()))
}

#[test]
fn a_write_that_timed_out_on_a_cut_path_never_reaches_graph_after_the_path_heals() {
    let net = Netns::create();
    let (db, switch) = (database(), net.switch());
    net.run(async move {
        let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("the simulator");
        let app = spawn_app_against(sim, db, |s| {
            s.graph.timeout_ms = 1_000;
            s.graph.max_concurrency = 1;
        })
        .await;
        // A first meeting leaves an idle connection to Graph in the pool:
        // the next request is written on it at once.
        let first = app.listed(meeting(1));
        app.tick().await;
        assert_eq!(app.status(&first.id).await.state, "synced");
        let second = app.listed(meeting(2));
        regsync::sync::ingest::poll(&app.ctx).await.expect("the listing, read while the path is whole");

        switch.cut();
        app.reconcile().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        switch.heal();
        // TCP retransmits what it holds on a backoff (about 0.2, 0.6, 1.4, 3
        // and 6 s after the send): wait past the retransmission after the heal.
        tokio::time::sleep(Duration::from_secs(7)).await;

        let abandoned: Vec<uuid::Uuid> = sqlx::query_scalar(
            "SELECT client_request_id FROM graph_calls WHERE method = 'POST' AND outcome = 'transient'",
        )
        .fetch_all(&app.pool)
        .await
        .expect("the audit rows");
        assert!(!abandoned.is_empty(), "the POST on the cut path timed out");
        let arrived: Vec<String> = app.sim.log().into_iter().filter_map(|r| r.client_request_id).collect();
        for id in &abandoned {
            assert!(
                !arrived.contains(&id.to_string()),
                "POST {id} reached Graph after regsync had given up on it (and would look it up as not sent)"
            );
        }

        // What regsync concluded holds: the lookup finds nothing, one create.
        app.settle().await;
        assert_eq!(app.status(&second.id).await.state, "synced");
        let creates = app
            .sim
            .log()
            .iter()
            .filter(|r| r.method == "POST" && r.acted && r.meeting == second.online_meeting_id)
            .count();
        assert_eq!(creates, 1);
    });
}
