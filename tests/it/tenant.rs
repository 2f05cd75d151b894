//! Credentials a real tenant asks for: a certificate (a signed client
//! assertion) and a federated assertion read from its file for every token.

use std::path::PathBuf;
use std::time::Duration;

use regsync::config::GraphAuth;

use crate::helpers::{meeting, spawn_app_with};

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[tokio::test]
async fn a_certificate_credential_signs_an_assertion_the_identity_platform_accepts() {
    let app = spawn_app_with(|s| {
        s.graph.auth = GraphAuth::Certificate;
        s.graph.client_secret = None;
        s.graph.certificate_path = Some(fixture("graph-app.crt"));
        s.graph.private_key_path = Some(fixture("graph-app.key"));
    })
    .await;
    app.sim.trust_certificate(&std::fs::read_to_string(fixture("graph-app.crt")).expect("the certificate"));
    for n in 1..=5 {
        app.listed(meeting(n));
    }

    let report = app.tick().await;
    app.settle().await;

    assert_eq!(report.error, None);
    assert_eq!(app.sim.stats().registrations, 5);
    assert_eq!(app.sim.stats().tokens_issued, 1, "one token for the cycle");
}

#[tokio::test]
async fn an_unregistered_certificate_fails_with_the_fix_and_burns_no_attempt() {
    let app = spawn_app_with(|s| {
        s.graph.auth = GraphAuth::Certificate;
        s.graph.certificate_path = Some(fixture("other-app.crt"));
        s.graph.private_key_path = Some(fixture("other-app.key"));
    })
    .await;
    app.sim.trust_certificate(&std::fs::read_to_string(fixture("graph-app.crt")).expect("the certificate"));
    let m = app.listed(meeting(1));

    let report = app.tick().await;

    let error = report.error.expect("the token was refused");
    assert!(error.contains("AADSTS700027") && error.contains("upload the certificate"), "{error}");
    assert!(error.contains("trace id") && error.contains("correlation id"), "support's ids: {error}");
    assert_eq!(app.status(&m.id).await.attempts, 0);
    assert!(app.sim.log().is_empty(), "nothing reached Graph");
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_own_is_refused_for_its_signature() {
    let app = spawn_app_with(|s| {
        s.graph.auth = GraphAuth::Certificate;
        s.graph.certificate_path = Some(fixture("graph-app.crt"));
        s.graph.private_key_path = Some(fixture("other-app.key"));
    })
    .await;
    app.sim.trust_certificate(&std::fs::read_to_string(fixture("graph-app.crt")).expect("the certificate"));
    app.listed(meeting(1));

    let error = app.tick().await.error.expect("the signature does not verify");

    assert!(error.contains("AADSTS700027"), "{error}");
}

#[tokio::test]
async fn a_federated_assertion_is_read_again_for_every_token_so_a_rotated_file_just_works() {
    let dir = tempdir();
    let file = dir.join("azure-identity-token");
    let app = spawn_app_with(|s| {
        s.graph.auth = GraphAuth::Federated;
        s.graph.client_secret = None;
        s.graph.federated_token_file = Some(file.clone());
    })
    .await;
    std::fs::write(&file, app.sim.federated_assertion()).expect("projected");
    // Tokens live a second: each cycle below needs a new one.
    app.sim.token_lifetime(1);
    app.listed(meeting(1));
    assert_eq!(app.tick().await.error, None);

    // Kubernetes rotates the projected token; the old one expires.
    app.sim.expire_federated_assertions();
    std::fs::write(&file, app.sim.federated_assertion()).expect("rotated");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.listed(meeting(2));
    let report = app.tick().await;
    app.settle().await;

    assert_eq!(report.error, None);
    assert_eq!(app.sim.stats().registrations, 2);
    assert_eq!(app.sim.stats().tokens_issued, 2, "a token per cycle, each from the file as it was");

    // An expired assertion in the file: the token error names the file.
    app.sim.expire_federated_assertions();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.listed(meeting(3));
    let error = app.tick().await.error.expect("the expired assertion is refused");
    assert!(error.contains("AADSTS700024"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system's temporary directory.
pub fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("regsync-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}
