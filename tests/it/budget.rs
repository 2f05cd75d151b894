//! Microsoft's limit on virtual-event writes is the deployment's: every
//! replica takes its writes from one budget in the database.

use std::time::Duration;

use regsync::store::throttle::{take_write_place, write_answered};

use crate::helpers::{spawn_app, TestApp};
use crate::registrants::{listed_webinar, webinar_app};

#[tokio::test]
async fn the_write_budget_holds_n_places_counted_until_a_window_after_each_answer() {
    let app = spawn_app().await;
    let (window, timeout) = (Duration::from_secs(30), Duration::from_secs(2));
    let mut places = Vec::new();
    for _ in 0..3 {
        places.push(take_write_place(&app.pool, 3, window, timeout).await.unwrap().expect("a place"));
    }
    let wait = take_write_place(&app.pool, 3, window, timeout).await.unwrap().expect_err("full");
    assert!(wait > Duration::from_secs(30), "unanswered writes count until their timeout and a window: {wait:?}");
    write_answered(&app.pool, places[0]).await.unwrap();
    let wait = take_write_place(&app.pool, 3, window, timeout).await.unwrap().expect_err("still full");
    assert!(wait <= window && wait > Duration::from_secs(25), "an answer frees its place a window later: {wait:?}");
}

/// The most writes the simulator received in any 30 s.
fn most_writes_in_30s(app: &TestApp) -> usize {
    let writes: Vec<_> =
        app.sim.people_log().into_iter().filter(|r| r.call == "POST registration").map(|r| r.at).collect();
    writes
        .iter()
        .map(|&from| writes.iter().filter(|&&at| at >= from && at < from + Duration::from_secs(30)).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_one_webinar_write_budget() {
    // Each replica claims two registrants at a time: all three write.
    let app = webinar_app(|s| {
        s.graph.virtual_event_writes_per_30s = 4;
        s.graph.max_concurrency = 1;
        s.sync.claim_batch = 1;
    })
    .await;
    let webinars: Vec<_> = (1..=2).map(|n| listed_webinar(&app, n, "published")).collect();
    app.sim.seed_registrants(&webinars, 3);
    let listed = regsync::sync::ingest::poll(&app.ctx).await.expect("meetings");
    regsync::sync::registrants::poll(&app.ctx, listed.run_id).await.expect("registrants");

    let replicas = [app.ctx.clone(), app.replica(), app.replica()];
    let passes = replicas.map(|ctx| tokio::spawn(async move { regsync::sync::registrants::reconcile_due(&ctx).await }));
    for pass in passes {
        pass.await.expect("joined").expect("a pass");
    }
    app.settle().await;

    let registered: usize = webinars.iter().map(|w| crate::registrants::registrations(&app, w).len()).sum();
    assert_eq!(registered, 6, "everyone registered");
    assert!(most_writes_in_30s(&app) <= 4, "{} writes in one 30 s window", most_writes_in_30s(&app));
}
