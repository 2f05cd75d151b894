//! The platform's listing: bad items, partial listings, duplicates, ids that
//! must not bend Graph paths.

use regsync::config::OnMissing;
use regsync_sim::{PageFault, SimMeeting};
use serde_json::json;

use crate::helpers::{meeting, spawn_app, spawn_app_with};

#[tokio::test]
async fn bad_items_are_rejected_with_reasons_while_the_good_ones_sync() {
    let app = spawn_app().await;
    app.sim.upsert_meeting(meeting(1));
    app.sim.push_raw_item(json!({"id": "evt-x1", "organizer_id": "o"}));
    app.sim.push_raw_item(
        json!({"id": "evt-x2", "organizer_id": "o", "online_meeting_id": "m", "allowed_registrant": "public"}),
    );
    app.sim
        .push_raw_item(json!({"id": "evt-x3", "organizer_id": "o", "online_meeting_id": "m", "status": "postponed"}));
    app.sim.push_raw_item(json!({"id": "", "organizer_id": "o", "online_meeting_id": "m"}));
    app.sim.push_raw_item(json!({"id": "evt-x5", "organizer_id": ["o"], "online_meeting_id": "m"}));
    app.sim.push_raw_item(json!({"id": "evt-x6", "organizer_id": "..", "online_meeting_id": "m"}));
    app.sim.push_raw_item(json!(42));
    app.sim.upsert_meeting(meeting(2));

    let report = app.tick().await;

    assert_eq!(report.poll.rejected, 7);
    let reasons: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT external_id, reason FROM ops.rejected_items ORDER BY seen_at, external_id NULLS LAST")
            .fetch_all(&app.pool)
            .await
            .expect("rejections");
    let text = format!("{reasons:?}");
    for expected in [
        "online_meeting_id (at /online_meeting_id) is missing",
        "allowed_registrant is \\\"public\\\"",
        "status is \\\"postponed\\\"",
        "id (at /id) is empty",
        "organizer_id (at /organizer_id) is an array",
        "would change the Graph URL path",
        "item is a number",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
    assert_eq!(app.status("evt-1").await.state, "synced");
    assert_eq!(app.status("evt-2").await.state, "synced");
    assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 2);
}

#[tokio::test]
async fn a_partial_listing_deregisters_nothing_and_a_complete_one_does() {
    let app = spawn_app_with(|s| {
        s.sync.on_missing = OnMissing::Unregister;
        s.source.page_size = 2;
    })
    .await;
    for i in 1..=5 {
        app.sim.upsert_meeting(meeting(i));
    }
    app.tick().await;
    app.sim.remove_meeting("evt-1");
    app.sim.fail_page(1, PageFault::ServerError);

    let partial = app.tick().await;

    assert!(partial.poll.partial.as_deref().unwrap_or_default().contains("HTTP 500"), "{:?}", partial.poll.partial);
    assert_eq!(app.sim.log().iter().filter(|r| r.method == "DELETE").count(), 0);
    assert_eq!(app.scalar("SELECT count(*) FROM ops.sync_runs WHERE status = 'partial'").await, 1);

    app.sim.heal_pages();
    app.tick().await;
    let gone = meeting(1);
    assert_eq!(app.calls_for(&gone), ["POST 201", "DELETE 204"]);
}

#[tokio::test]
async fn broken_json_mid_listing_keeps_what_was_read() {
    let app = spawn_app_with(|s| s.source.page_size = 3).await;
    for i in 1..=9 {
        app.sim.upsert_meeting(meeting(i));
    }
    app.sim.fail_page(2, PageFault::BrokenJson);

    let report = app.tick().await;

    assert!(report.poll.partial.as_deref().unwrap_or_default().contains("not valid JSON"));
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 6);
}

#[tokio::test]
async fn a_duplicated_id_in_one_listing_is_rejected_after_its_first_occurrence() {
    let app = spawn_app().await;
    app.sim.upsert_meeting(meeting(1));
    app.sim.push_raw_item(json!(SimMeeting { allowed_registrant: "organization".into(), ..meeting(1) }));

    let report = app.tick().await;

    assert_eq!(report.poll.rejected, 1);
    assert_eq!(
        app.scalar("SELECT count(*) FROM ops.rejected_items WHERE reason LIKE '%appears more than once%'").await,
        1
    );
    let held = app.sim.registration("org-1", "MSp0001").expect("registered");
    assert_eq!(held.allowed_registrant, "everyone", "the first occurrence wins");
}

#[tokio::test]
async fn an_id_repeated_on_a_later_page_is_rejected_and_its_first_occurrence_stands() {
    let app = spawn_app_with(|s| s.source.page_size = 2).await;
    app.sim.upsert_meeting(meeting(1));
    app.sim.upsert_meeting(meeting(2));
    app.sim.push_raw_item(json!(SimMeeting { allowed_registrant: "organization".into(), ..meeting(1) }));

    let report = app.tick().await;

    assert_eq!((report.poll.pages, report.poll.rejected), (2, 1));
    assert_eq!(
        app.scalar("SELECT count(*) FROM ops.rejected_items WHERE reason LIKE '%appears more than once%'").await,
        1
    );
    app.settle().await;
    let held = app.sim.registration("org-1", "MSp0001").expect("registered");
    assert_eq!(held.allowed_registrant, "everyone", "the first occurrence wins across pages too");
}

#[tokio::test]
async fn ids_with_path_characters_are_percent_encoded_into_one_segment() {
    let app = spawn_app().await;
    let odd = SimMeeting::new("evt/../?#% ü", "org/../admin?x=1#f", "1*dc17674c*0**19:meeting_é@thread.v2%2F..");
    app.sim.upsert_meeting(odd.clone());

    app.tick().await;

    let held = app.sim.registration(&odd.organizer_id, &odd.online_meeting_id).expect("registered under the exact ids");
    assert_eq!(app.status(&odd.id).await.registration_id.as_deref(), Some(held.id.as_str()));
    let path: String =
        sqlx::query_scalar("SELECT path FROM ops.graph_calls").fetch_one(&app.pool).await.expect("audit");
    assert_eq!(path.matches('/').count(), 5, "{path}");
}

#[tokio::test]
async fn an_oversized_page_or_too_many_pages_make_the_listing_partial_without_losing_what_was_read() {
    let app = spawn_app_with(|s| {
        s.source.page_size = 2;
        s.source.max_pages = 2;
        s.sync.on_missing = OnMissing::Unregister;
    })
    .await;
    for i in 1..=6 {
        app.sim.upsert_meeting(meeting(i));
    }

    let cut = app.tick().await;

    assert!(cut.poll.partial.as_deref().unwrap_or_default().contains("source.max_pages (2)"), "{:?}", cut.poll.partial);
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 4);

    let app = spawn_app_with(|s| s.source.max_page_bytes = 600).await;
    for i in 1..=6 {
        app.sim.upsert_meeting(meeting(i));
    }
    let big = app.tick().await;
    assert!(big.poll.partial.as_deref().unwrap_or_default().contains("larger than source.max_page_bytes"));
    assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 0);
}

#[tokio::test]
async fn wrong_types_and_unknown_values_are_each_rejected_while_the_rest_syncs() {
    let app = spawn_app().await;
    let good = SimMeeting::new("évènement-1", "organisateur-ü", "MSpÜmlaut");
    app.sim.upsert_meeting(good.clone());
    app.sim.push_raw_item(json!({"id": "evt-t1", "organizer_id": "o", "online_meeting_id": 12}));
    app.sim.push_raw_item(json!({"id": "evt-t2", "organizer_id": "o", "online_meeting_id": "m", "status": true}));
    app.sim.push_raw_item(json!({"id": "evt-t3", "organizer_id": "o", "online_meeting_id": "m", "allowed_registrant": "unknownFutureValue"}));
    app.sim.push_raw_item(json!({"id": 1.5, "organizer_id": "o", "online_meeting_id": "m"}));
    app.sim.push_raw_item(json!({"id": "evt-t5", "organizer_id": "o\u{0}x", "online_meeting_id": "m"}));

    let report = app.tick().await;

    assert_eq!(report.poll.rejected, 5);
    for (id, reason) in [
        ("evt-t1", "online_meeting_id (at /online_meeting_id) is a number"),
        // A boolean status is a word like any other: unmapped, it is rejected
        // with the key that would map it.
        ("evt-t2", "status is \"true\", which is not \"active\" or \"cancelled\": map it with source.status_map.true"),
        ("evt-t3", "allowed_registrant is \"unknownFutureValue\""),
        ("evt-t5", "contains control characters"),
    ] {
        let found: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ops.rejected_items WHERE external_id = $1 AND reason LIKE '%' || $2 || '%'",
        )
        .bind(id)
        .bind(reason)
        .fetch_one(&app.pool)
        .await
        .expect("query");
        assert_eq!(found, 1, "{id}: {reason}");
    }
    assert_eq!(app.scalar("SELECT count(*) FROM ops.rejected_items WHERE external_id IS NULL AND reason LIKE 'id (at /id) is a number%'").await, 1);
    assert!(app.sim.registration(&good.organizer_id, &good.online_meeting_id).is_some());
    assert_eq!(app.status(&good.id).await.state, "synced");
}

#[tokio::test]
async fn an_item_with_an_unpaired_surrogate_or_a_nul_is_rejected_alone() {
    let app = spawn_app().await;
    app.sim.upsert_meeting(meeting(1));
    app.sim.push_raw_text(r#"{"id": "evt-s1", "organizer_id": "o", "online_meeting_id": "m", "title": "\ud800"}"#);
    app.sim.push_raw_text("{\"id\": \"evt-s2\", \"organizer_id\": \"o\u{0}\", \"online_meeting_id\": \"m\"}");
    app.sim.push_raw_text(r#"{"id": "evt-s3", "organizer_id": "o", "online_meeting_id": "m", "title": "\u0000"}"#);
    app.sim.upsert_meeting(meeting(2));

    let report = app.tick().await;

    assert_eq!(report.poll.partial, None, "the listing is complete");
    assert_eq!((report.poll.rejected, report.reconcile.created), (3, 2));
    let rejected: Vec<String> = sqlx::query_scalar("SELECT external_id FROM ops.rejected_items ORDER BY external_id")
        .fetch_all(&app.pool)
        .await
        .expect("rejections");
    assert_eq!(rejected, ["evt-s1", "evt-s2", "evt-s3"]);
}

#[tokio::test]
async fn an_informational_field_in_an_odd_format_does_not_reject_the_meeting() {
    let app = spawn_app().await;
    let mut m = meeting(1);
    m.updated_at = "2026-11-28 10:00:00".into();
    app.sim.upsert_meeting(m.clone());

    let report = app.tick().await;

    assert_eq!((report.poll.rejected, report.reconcile.created), (0, 1));
}

#[tokio::test]
async fn an_error_body_holding_a_nul_still_closes_the_cycle() {
    let app = spawn_app().await;
    app.sim.upsert_meeting(meeting(1));
    app.sim.fail_page(0, PageFault::NulInErrorBody);

    let _ = regsync::sync::tick(&app.ctx).await;

    assert_eq!(app.scalar("SELECT count(*) FROM ops.sync_runs WHERE status = 'running'").await, 0);
    let error: String = sqlx::query_scalar("SELECT error FROM ops.sync_runs").fetch_one(&app.pool).await.expect("row");
    assert!(error.contains("502"), "{error}");
}

#[tokio::test]
async fn credentials_in_the_platform_url_never_reach_the_records() {
    let port = crate::helpers::free_port(); // nothing listens there
    let app =
        spawn_app_with(|s| s.source.base_url = Some(format!("http://reader:pl4tform-pass@127.0.0.1:{port}/api"))).await;

    let report = app.tick().await;

    let partial = report.poll.partial.expect("the platform is down");
    assert!(!partial.contains("pl4tform-pass"), "{partial}");
    let recorded: String =
        sqlx::query_scalar("SELECT error FROM ops.sync_runs").fetch_one(&app.pool).await.expect("row");
    assert!(!recorded.contains("pl4tform-pass") && recorded.contains("127.0.0.1"), "{recorded}");
}

#[tokio::test]
async fn a_bad_item_seen_on_every_poll_is_one_row_that_counts_its_sightings() {
    let app = spawn_app().await;
    app.sim.push_raw_item(json!({"id": "evt-bad", "organizer_id": "o"}));
    app.sim.push_raw_item(json!(["no id at all"]));

    for _ in 0..3 {
        app.tick().await;
    }

    let rows: Vec<(Option<String>, i32, bool)> = sqlx::query_as(
        "SELECT external_id, times_seen, first_seen_at < seen_at FROM ops.rejected_items ORDER BY external_id",
    )
    .fetch_all(&app.pool)
    .await
    .expect("rejections");
    assert_eq!(rows, [(Some("evt-bad".into()), 3, true), (None, 3, true)]);
}

#[tokio::test]
async fn old_audit_rows_rejections_and_cycles_are_pruned_in_small_batches() {
    let app = spawn_app_with(|s| {
        s.retention.max_age_days = 30;
        s.retention.batch_size = 2;
    })
    .await;
    app.sim.upsert_meeting(meeting(1));
    app.sim.push_raw_item(json!({"id": "evt-bad", "organizer_id": "o"}));
    app.tick().await;
    for sql in [
        "INSERT INTO graph_calls (at, method, path, duration_ms, client_request_id, outcome)
         SELECT now() - interval '40 days', 'GET', '/x', 1, gen_random_uuid(), 'found' FROM generate_series(1, 5)",
        "INSERT INTO rejected_items (first_seen_at, seen_at, item_key, reason, raw)
         SELECT now() - interval '50 days', now() - interval '40 days', 'old-' || i, 'old', '' FROM generate_series(1, 5) i",
        "INSERT INTO sync_runs (started_at, finished_at, status)
         SELECT now() - interval '40 days', now() - interval '40 days', 'complete' FROM generate_series(1, 5)",
    ] {
        sqlx::query(sql).execute(&app.pool).await.expect("old rows");
    }

    app.tick().await;

    assert_eq!(app.scalar("SELECT count(*) FROM graph_calls WHERE at < now() - interval '30 days'").await, 0);
    assert_eq!(app.scalar("SELECT count(*) FROM rejected_items WHERE seen_at < now() - interval '30 days'").await, 0);
    assert_eq!(app.scalar("SELECT count(*) FROM sync_runs WHERE started_at < now() - interval '30 days'").await, 0);
    assert_eq!(app.scalar("SELECT count(*) FROM graph_calls").await, 1, "the recent audit row stays");
    assert_eq!(app.scalar("SELECT count(*) FROM rejected_items").await, 1, "the recent rejection stays");
    assert_eq!(app.scalar("SELECT count(*) FROM sync_runs").await, 2, "the recent cycles stay");
}
