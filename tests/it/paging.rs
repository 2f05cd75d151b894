//! The paging styles real platforms use, each syncing a multi-page listing
//! from the simulator, and the ways a listing stops short.

use regsync::config::{Paging, Settings};
use regsync_sim::PageFault;

use crate::helpers::{spawn_app_with, TestApp};

/// Points the source at the simulator's listing paged in `style`.
fn paged(style: &str, s: &mut Settings) {
    s.source.meetings_path = format!("/styles/{style}/meetings");
    s.source.page_size = 10;
    s.source.complete_pointer = "/complete".into();
    s.source.cursor_pointer = String::new();
    match style {
        "cursor" => {
            s.source.paging = Paging::Cursor;
            s.source.items_pointer = "/events".into();
            s.source.cursor_pointer = "/pagination/continuation".into();
            s.source.has_more_pointer = "/pagination/has_more_items".into();
        }
        "next_url" => {
            s.source.paging = Paging::NextUrl;
            s.source.items_pointer = "/data".into();
            s.source.next_url_pointer = "/links/next".into();
        }
        "link_header" => {
            s.source.paging = Paging::LinkHeader;
            s.source.items_pointer = String::new();
            s.source.complete_pointer = String::new();
        }
        "page_number" => {
            s.source.paging = Paging::PageNumber;
            s.source.items_pointer = "/items".into();
            s.source.total_pointer = "/total".into();
        }
        "offset" => {
            s.source.paging = Paging::Offset;
            s.source.items_pointer = "/results".into();
            s.source.total_pointer = "/count".into();
        }
        other => panic!("no style {other}"),
    }
}

async fn app_paged(style: &'static str) -> TestApp {
    let app = spawn_app_with(|s| paged(style, s)).await;
    app.sim.seed(25);
    app
}

#[tokio::test]
async fn every_paging_style_syncs_a_multi_page_listing() {
    for style in ["cursor", "next_url", "link_header", "page_number", "offset"] {
        let app = app_paged(style).await;

        let report = app.tick().await;

        assert_eq!(report.poll.partial, None, "{style}");
        assert_eq!((report.poll.pages, report.poll.seen), (3, 25), "{style}");
        let stored = app.scalar("SELECT count(*) FROM meetings").await;
        let synced = app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await;
        assert_eq!((stored, synced), (25, 25), "{style}");
        assert_eq!(app.sim.stats().registrations, 23, "{style}: every active meeting registered");
    }
}

#[tokio::test]
async fn a_page_the_platform_marks_incomplete_makes_the_listing_partial() {
    for style in ["cursor", "next_url", "page_number", "offset"] {
        let app = app_paged(style).await;
        app.sim.fail_page(1, PageFault::Incomplete);

        let report = app.tick().await;

        let partial = report.poll.partial.unwrap_or_default();
        assert!(partial.contains("incomplete"), "{style}: {partial:?}");
        assert_eq!(report.poll.pages, 2, "{style}: nothing after the incomplete page");
        assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 20, "{style}: what was read is kept");
    }
}

#[tokio::test]
async fn a_cursor_or_link_seen_twice_makes_the_listing_partial_instead_of_looping() {
    for style in ["cursor", "next_url", "link_header"] {
        let app = app_paged(style).await;
        app.sim.fail_page(2, PageFault::RepeatCursor);

        let report = app.tick().await;

        let partial = report.poll.partial.unwrap_or_default();
        assert!(partial.contains("twice"), "{style}: {partial:?}");
        assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 25, "{style}");
    }
}

#[tokio::test]
async fn a_platform_429_is_waited_out_for_its_retry_after_and_the_listing_completes() {
    let app = app_paged_default(|s| s.source.page_retries = 2).await;
    app.sim.fail_page(1, PageFault::ThrottledOnce);

    let report = app.tick().await;

    assert_eq!(report.poll.partial, None);
    assert_eq!(app.scalar("SELECT count(*) FROM meetings").await, 25);
    let requests = app.sim.platform_requests();
    let statuses: Vec<u16> = requests.iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [200, 429, 200, 200]);
    let waited = requests[2].0 - requests[1].0;
    assert!(waited >= std::time::Duration::from_secs(1), "asked again after {waited:?}, Retry-After was 1 s");
}

#[tokio::test]
async fn a_failing_page_is_asked_again_a_bounded_number_of_times_then_the_listing_is_partial() {
    let app = app_paged_default(|s| s.source.page_retries = 2).await;
    app.sim.fail_page(1, PageFault::ServerError);

    let report = app.tick().await;

    assert!(report.poll.partial.unwrap_or_default().contains("HTTP 500"));
    let statuses: Vec<u16> = app.sim.platform_requests().iter().map(|(_, s)| *s).collect();
    assert_eq!(statuses, [200, 500, 500, 500], "the first try and two more");
}

#[tokio::test]
async fn requests_to_the_platform_keep_to_its_pace() {
    let app = app_paged_default(|s| s.source.max_requests_per_second = 2).await;

    app.tick().await;

    let requests = app.sim.platform_requests();
    assert_eq!(requests.len(), 3);
    // A quota of 2 per second lets a burst of 2 through, then one every 0.5 s.
    let spread = requests[2].0 - requests[0].0;
    assert!(spread >= std::time::Duration::from_millis(450), "3 pages in {spread:?} at 2 per second");
}

/// The simulator's own listing style, 25 meetings on pages of 10.
async fn app_paged_default(change: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(|s| {
        s.source.page_size = 10;
        change(s);
    })
    .await;
    app.sim.seed(25);
    app
}

#[tokio::test]
async fn basic_auth_and_an_extra_key_header_reach_the_platform_and_without_them_the_poll_fails() {
    let app = app_paged_default(|s| {
        s.source.auth = regsync::config::SourceAuth::Basic;
        s.source.username = Some("regsync".into());
        s.source.password = Some("pl@tform pass".to_owned().into());
        s.source.headers.insert("X-Second-Key".into(), "second-key-value".to_owned().into());
    })
    .await;
    // base64("regsync:pl@tform pass")
    app.sim.require_platform_headers(&[
        ("authorization", "Basic cmVnc3luYzpwbEB0Zm9ybSBwYXNz"),
        ("x-second-key", "second-key-value"),
    ]);
    let refused = spawn_app_with(|s| s.source.auth = regsync::config::SourceAuth::None).await;
    refused.sim.seed(3);
    refused.sim.require_platform_headers(&[("x-second-key", "second-key-value")]);

    let report = app.tick().await;
    let refused_report = refused.tick().await;

    assert_eq!(report.poll.partial, None);
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 25);
    assert_eq!(refused_report.poll.result(), "failed");
    assert!(refused_report.poll.partial.unwrap_or_default().contains("HTTP 401"));
}

/// OAuth2 client credentials against the simulator's token endpoint.
fn oauth2_via_simulator(s: &mut Settings, secret: &str) {
    s.source.auth = regsync::config::SourceAuth::Oauth2;
    s.source.oauth2.token_url = Some(format!("{}/oauth2/token", s.source.base_url.clone().unwrap_or_default()));
    s.source.oauth2.client_id = Some(regsync_sim::PLATFORM_CLIENT_ID.into());
    s.source.oauth2.client_secret = Some(secret.to_owned().into());
}

#[tokio::test]
async fn an_api_key_header_syncs_a_multi_page_listing() {
    let app = app_paged_default(|s| {
        s.source.auth = regsync::config::SourceAuth::ApiKey;
        s.source.api_key_header = "X-Api-Key".into();
        s.source.token = Some("platform-api-key".to_owned().into());
    })
    .await;
    app.sim.require_platform_headers(&[("x-api-key", "platform-api-key")]);

    let report = app.tick().await;

    assert_eq!((report.poll.partial, report.poll.pages), (None, 3));
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 25);
}

#[tokio::test]
async fn oauth2_client_credentials_sync_a_multi_page_listing_through_a_token_that_expires_mid_listing() {
    let app = app_paged_default(|s| {
        oauth2_via_simulator(s, regsync_sim::PLATFORM_CLIENT_SECRET);
        s.source.oauth2.scope = Some("event/events:read".into());
    })
    .await;
    app.sim.require_platform_oauth(3600);
    app.sim.fail_page(1, PageFault::TokenExpired);

    let report = app.tick().await;

    assert_eq!(report.poll.partial, None, "the listing completes with a fresh token");
    assert_eq!(report.poll.pages, 3);
    assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 25);
    assert_eq!(app.sim.platform_tokens_issued(), 2, "one token, then one after it expired");

    app.tick().await;
    assert_eq!(app.sim.platform_tokens_issued(), 2, "the token is cached between polls");
}

#[tokio::test]
async fn an_oauth2_token_is_refreshed_before_it_expires() {
    let app = app_paged_default(|s| {
        oauth2_via_simulator(s, regsync_sim::PLATFORM_CLIENT_SECRET);
    })
    .await;
    // A token of 2 s is used for 1.5 s: the second poll, 2 s later, gets a
    // new one before asking the platform, so no request is refused.
    app.sim.require_platform_oauth(2);

    assert_eq!(app.tick().await.poll.partial, None);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(app.tick().await.poll.partial, None);

    assert_eq!(app.sim.platform_tokens_issued(), 2);
    let refused = app.sim.platform_requests().iter().filter(|(_, status)| *status == 401).count();
    assert_eq!(refused, 0, "no request went out with an expired token");
}

#[tokio::test]
async fn a_wrong_oauth2_secret_fails_the_poll_with_the_endpoints_reason_and_never_the_secret() {
    let app = app_paged_default(|s| {
        oauth2_via_simulator(s, "wrong-secret-value");
    })
    .await;
    app.sim.require_platform_oauth(3600);

    let report = app.tick().await;

    assert_eq!(report.poll.result(), "failed");
    let why = report.poll.partial.unwrap_or_default();
    assert!(why.contains("HTTP 401 invalid_client") && why.contains("source.oauth2.client_id"), "{why}");
    assert!(!why.contains("wrong-secret-value"));
}

#[tokio::test]
async fn a_bearer_token_file_is_read_again_when_it_changes() {
    let file = std::env::temp_dir().join(format!("regsync-platform-token-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, "first-token\n").expect("token written");
    let app = app_paged_default(|s| {
        s.source.auth = regsync::config::SourceAuth::Bearer;
        s.source.token = Some("first-token".to_owned().into());
        s.source.token_file = Some(file.clone());
    })
    .await;
    app.sim.require_platform_headers(&[("authorization", "Bearer first-token")]);
    assert_eq!(app.tick().await.poll.partial, None);

    // Rotated in place, as a mounted secret is: no restart.
    std::fs::write(&file, "second-token\n").expect("token rotated");
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options().write(true).open(&file).and_then(|f| f.set_modified(later)).expect("mtime");
    app.sim.require_platform_headers(&[("authorization", "Bearer second-token")]);
    app.sim.upsert_meeting(regsync_sim::SimMeeting::new("evt-after-rotation", "org-1", "MSpRotated"));

    let report = app.tick().await;

    assert_eq!(report.poll.partial, None);
    assert_eq!(app.status("evt-after-rotation").await.state, "synced");
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn an_oauth2_lifetime_of_any_valid_json_number_is_taken_without_a_panic() {
    for expires_in in [serde_json::json!(u64::MAX), serde_json::json!(1e300), serde_json::json!(-1)] {
        let app = app_paged_default(|s| oauth2_via_simulator(s, regsync_sim::PLATFORM_CLIENT_SECRET)).await;
        app.sim.require_platform_oauth(3600);
        app.sim.platform_token_expires_in(expires_in.clone());

        let report = app.tick().await;

        assert_eq!(report.poll.partial, None, "expires_in {expires_in}: the listing completes");
        assert_eq!(app.scalar("SELECT count(*) FROM meetings WHERE state = 'synced'").await, 25, "{expires_in}");
    }
}
