//! The CI-sized reliability designs that run in-process
//! (docs/reliability.md): a 429 storm, poller idempotency, race windows
//! (100 loops each) and a lost-response storm.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::{IndexedRandom, SliceRandom};
use regsync::domain::{
    AllowedRegistrant, Desired, ExternalId, ExternalMeeting, MeetingRef, OnlineMeetingId, OrganizerId, OrganizerRef,
};
use regsync::store;
use regsync::sync::{self, Ctx};
use regsync_sim::{Fault, SimMeeting};

use crate::helpers::{eventually, meeting, spawn_app, spawn_app_with, synced_outcome, TestApp};

async fn all_synced(app: &TestApp) -> bool {
    app.scalar("SELECT count(*) FROM meetings WHERE state <> 'synced'").await == 0
}

/// Runs a replica's reconcile loop, as `regsync run` does, until `done`.
async fn replica_loop(ctx: Arc<Ctx>, until: Instant) {
    while Instant::now() < until && !ctx.shutdown.is_cancelled() {
        let _ = sync::reconcile_due(&ctx).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_429_storm_is_honoured_by_every_replica_with_one_probe_per_window() {
    let app = spawn_app().await;
    app.sim.seed(500);
    sync::ingest::poll(&app.ctx).await.expect("poll");
    // One replica holds a token; the others get theirs only after its first
    // requests were throttled, as replicas that start or refresh at
    // different times do.
    app.ctx.graph.permit().await.expect("a token");
    app.sim.delay_tokens(Duration::from_millis(400));
    let storm = Duration::from_secs(6);
    app.sim.throttle_all_for(storm, "1");
    let started = Instant::now();
    let replicas = [app.ctx.clone(), app.replica(), app.replica()];

    let deadline = started + Duration::from_secs(90);
    let loops: Vec<_> = replicas.iter().map(|ctx| tokio::spawn(replica_loop(ctx.clone(), deadline))).collect();
    tokio::time::sleep(storm).await;
    let attempts_after_storm = app.scalar("SELECT coalesce(max(attempts), 0)::int8 FROM meetings").await;
    let synced = eventually(deadline.saturating_duration_since(Instant::now()), async || all_synced(&app).await).await;
    assert!(synced, "not all synced after the storm");
    for ctx in &replicas {
        ctx.shutdown.cancel();
    }
    for l in loops {
        l.await.expect("replica loop");
    }

    let log = app.sim.log();
    let first_429 = log.iter().find(|r| r.status == 429).expect("throttled").at;
    let storm_end = tokio::time::Instant::from_std(started + storm);
    // Requests already under way when the first 429 was answered can arrive
    // a little later on a loaded machine; count from half a second after it.
    let during = log.iter().filter(|r| r.at > first_429 + Duration::from_millis(500) && r.at < storm_end).count();
    assert!(during <= 7, "{during} requests during a 6 s storm with Retry-After 1 s");
    assert_eq!(app.sim.stats().requests_inside_retry_after, 0);
    assert_eq!(attempts_after_storm, 0, "throttling cost no meeting an attempt");
    assert_eq!(app.sim.stats().registrations, 450);
}

fn external(i: usize) -> ExternalMeeting {
    ExternalMeeting {
        external_id: ExternalId(format!("evt-{i}")),
        organizer: OrganizerRef::Id(OrganizerId(format!("org-{}", i % 7))),
        online_meeting: MeetingRef::Id(OnlineMeetingId(format!("MSp{i}"))),
        allowed_registrant: AllowedRegistrant::Everyone,
        desired: Desired::Registered,
        updated_at: None,
        times: Default::default(),
    }
}

#[tokio::test]
async fn ten_concurrent_pollers_of_shuffled_duplicated_partial_pages_keep_one_row_per_meeting() {
    let app = spawn_app().await;
    let all: Vec<ExternalMeeting> = (0..1_000).map(external).collect();

    let pollers: Vec<_> = (0..10)
        .map(|_| {
            let (pool, all) = (app.pool.clone(), all.clone());
            tokio::spawn(async move {
                for _ in 0..100 {
                    // A page: a shuffled sample with repeats, deduplicated as
                    // ingest deduplicates a listing.
                    let mut page: Vec<ExternalMeeting> = {
                        let mut rng = rand::rng();
                        (0..150).map(|_| all.choose(&mut rng).expect("meetings").clone()).collect()
                    };
                    let mut seen = HashSet::new();
                    page.retain(|m| seen.insert(m.external_id.clone()));
                    page.shuffle(&mut rand::rng());
                    store::meetings::upsert_page(&pool, &page, chrono::Utc::now()).await.expect("upsert never fails");
                }
            })
        })
        .collect();
    for p in pollers {
        p.await.expect("poller");
    }
    store::meetings::upsert_page(&app.pool, &all, chrono::Utc::now()).await.expect("the full listing");

    assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 1_000);
    let as_listed = "SELECT count(*) FROM meetings
                     WHERE organizer_id = 'org-' || (substr(external_id, 5)::int % 7)
                       AND online_meeting_id = 'MSp' || substr(external_id, 5) AND state = 'pending'";
    assert_eq!(app.scalar(as_listed).await, 1_000, "every row holds its meeting as listed");
}

#[tokio::test]
async fn concurrent_polls_and_a_meeting_removed_and_readded_keep_one_row_and_one_create() {
    let app = spawn_app_with(|s| s.source.page_size = 50).await;
    for i in 0..300 {
        app.sim.upsert_meeting(meeting(i));
    }
    let pollers: Vec<_> = (0..10)
        .map(|_| {
            let ctx = app.replica();
            tokio::spawn(async move {
                for _ in 0..5 {
                    sync::ingest::poll(&ctx).await.expect("poll");
                }
            })
        })
        .collect();
    for p in pollers {
        p.await.expect("poller");
    }
    app.settle().await;
    let m = meeting(7);
    app.sim.remove_meeting(&m.id);
    app.tick().await;
    app.sim.upsert_meeting(m.clone());
    app.tick().await;

    assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 300);
    assert_eq!(app.calls_for(&m), ["POST 201"]);
}

/// A row back to due-now with no lease.
async fn reset(app: &TestApp) {
    sqlx::query(
        "UPDATE meetings SET state = 'pending', lease_token = NULL, lease_expires_at = NULL, next_attempt_at = now()",
    )
    .execute(&app.pool)
    .await
    .expect("reset");
}

#[tokio::test]
async fn race_windows_never_resurrect_double_claim_or_apply_a_stale_completion() {
    let app = spawn_app().await;
    store::meetings::upsert_page(&app.pool, &[external(1)], chrono::Utc::now()).await.expect("row");
    let ttl = Duration::from_secs(60);
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());

    for _ in 0..100 {
        // (a)+(b): the old owner completes while a rescuer claims the expired row.
        reset(&app).await;
        let old = store::claims::claim_due(&app.pool, 1, ttl, 8, a).await.expect("claim").remove(0);
        app.expire_leases().await;
        let outcome = synced_outcome();
        let (completed, rescued) = tokio::join!(
            store::outcome::record_outcome(&app.pool, &old, &outcome, &[]),
            store::claims::claim_due(&app.pool, 1, ttl, 8, b),
        );
        let (completed, rescued) = (completed.expect("finish"), rescued.expect("claim"));
        assert_eq!(completed, rescued.is_empty(), "exactly one of completion and rescue wins");
        if completed {
            assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 1, "not resurrected");
        } else {
            assert_eq!(
                rescued[0].claim.lease.token,
                sqlx::query_scalar::<_, uuid::Uuid>("SELECT lease_token FROM meetings")
                    .fetch_one(&app.pool)
                    .await
                    .expect("token")
            );
        }

        // (c): two claimers race for one due row.
        reset(&app).await;
        let (x, y) = tokio::join!(
            store::claims::claim_due(&app.pool, 5, ttl, 8, a),
            store::claims::claim_due(&app.pool, 5, ttl, 8, b),
        );
        assert_eq!(x.expect("claim").len() + y.expect("claim").len(), 1, "claimed exactly once");

        // (d): the completion is retried after its acknowledgement was lost.
        reset(&app).await;
        let owner = store::claims::claim_due(&app.pool, 1, ttl, 8, a).await.expect("claim").remove(0);
        let mut done = synced_outcome();
        done.last_error = Some("first".into());
        assert!(store::outcome::record_outcome(&app.pool, &owner, &done, &[]).await.expect("finish"));
        done.last_error = Some("retried".into());
        assert!(!store::outcome::record_outcome(&app.pool, &owner, &done, &[]).await.expect("finish again"));
        let kept: Option<String> =
            sqlx::query_scalar("SELECT last_error FROM meetings").fetch_one(&app.pool).await.expect("row");
        assert_eq!(kept.as_deref(), Some("first"), "the retry is a no-op");
    }
}

#[tokio::test]
async fn every_first_post_losing_its_response_still_gives_one_registration_each() {
    let app = spawn_app().await;
    let meetings: Vec<SimMeeting> = (0..100).map(meeting).collect();
    for m in &meetings {
        app.sim.upsert_meeting(m.clone());
    }
    for _ in 0..100 {
        app.sim.fail_next(Some("POST"), Fault::LostResponse);
    }

    app.tick().await;
    app.settle().await;

    let log = app.sim.log();
    assert_eq!(log.iter().filter(|r| r.method == "POST").count(), 100, "no second POST");
    assert!(log.iter().filter(|r| r.method == "GET").count() >= 100, "every lost response looked up");
    assert_eq!(app.sim.stats().registrations, 100);
    for m in &meetings {
        let held = app.sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered").id;
        assert_eq!(app.status(&m.id).await.registration_id.as_deref(), Some(held.as_str()));
    }
}

#[tokio::test]
async fn an_older_listing_ingested_late_never_undoes_what_a_newer_one_wrote() {
    let app = spawn_app().await;
    let now = chrono::Utc::now();
    let at = |secs_ago: i64| now - chrono::Duration::seconds(secs_ago);
    let active = external(1);
    let cancelled = ExternalMeeting { desired: Desired::Unregistered, ..external(1) };
    store::meetings::upsert_page(&app.pool, std::slice::from_ref(&active), at(120)).await.expect("first");

    // A listing begun 10 s ago saw the cancellation; one begun 30 s ago,
    // before it, is stored after it (its replica's database path was slow).
    store::meetings::upsert_page(&app.pool, std::slice::from_ref(&cancelled), at(10)).await.expect("newer");
    let stale = store::meetings::upsert_page(&app.pool, std::slice::from_ref(&active), at(30)).await.expect("older");

    assert_eq!(stale.changed, 0, "the older listing changed nothing");
    assert_eq!(app.status("evt-1").await.desired, "unregistered", "the cancellation stands");

    // Nor does an older complete listing that lacks a meeting a newer one saw.
    store::meetings::upsert_page(&app.pool, &[external(2)], at(5)).await.expect("new meeting");
    let (run_id, _) = store::runs::start_run(&app.pool).await.expect("a run");
    store::missing::note_listed(&app.pool, run_id, &["evt-1"]).await.expect("listed");
    let missing = store::missing::unregister_missing(&app.pool, run_id, at(30)).await.expect("missing");
    assert_eq!(missing, 0, "evt-2 was seen by a newer listing than the one it is missing from");
}
