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

/// The environment of one Graph credential kind for a `regsync` process,
/// after whatever that kind needs at the simulator.
async fn credential_env(kind: &str, sim: &regsync_sim::Sim, db: &str, dir: &std::path::Path) -> Vec<(String, String)> {
    let mut env = vec![("REGSYNC__GRAPH__AUTH".to_owned(), kind.to_owned())];
    match kind {
        "certificate" => {
            sim.trust_certificate(&std::fs::read_to_string(fixture("graph-app.crt")).expect("the certificate"));
            env.push(("REGSYNC__GRAPH__CLIENT_SECRET".into(), String::new()));
            env.push(("REGSYNC__GRAPH__CERTIFICATE_PATH".into(), fixture("graph-app.crt").display().to_string()));
            env.push(("REGSYNC__GRAPH__PRIVATE_KEY_PATH".into(), fixture("graph-app.key").display().to_string()));
        }
        "federated" => {
            let file = dir.join("federated-token");
            std::fs::write(&file, sim.federated_assertion()).expect("projected");
            env.push(("REGSYNC__GRAPH__CLIENT_SECRET".into(), String::new()));
            env.push(("AZURE_FEDERATED_TOKEN_FILE".into(), file.display().to_string()));
        }
        "delegated" => {
            env.push(("REGSYNC__GRAPH__CLIENT_SECRET".into(), String::new()));
            env.push(("REGSYNC__SECURITY__ENCRYPTION_KEY".into(), crate::delegated::encryption_key()));
            // Every organizer of the generated meetings signs in.
            for n in 0..5 {
                let oid = regsync_sim::SimMeeting::generated(n).organizer_id;
                sim.script_device_code(vec![regsync_sim::DeviceAnswer::SignedIn {
                    oid: oid.clone(),
                    upn: format!("organizer{n}@contoso.example"),
                }]);
                let login = tokio::task::spawn_blocking({
                    let (db, sim, env) = (db.to_owned(), sim.clone(), env.clone());
                    move || {
                        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                        crate::helpers::regsync_cli_within(&["login"], &db, &sim, &pairs, Duration::from_secs(60))
                    }
                })
                .await
                .expect("joined")
                .expect("login finished");
                assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
            }
        }
        _ => {}
    }
    env
}

#[tokio::test]
async fn every_credential_kind_syncs_at_trace_level_without_a_secret_in_logs_or_the_database() {
    let private_key = std::fs::read_to_string(fixture("graph-app.key")).expect("the key");
    let key_body: String = private_key.lines().filter(|l| !l.starts_with("-----")).take(3).collect();
    for kind in ["client_secret", "certificate", "federated", "delegated"] {
        let db = crate::helpers::fresh_database().await;
        let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
        sim.seed(9);
        // The platform's OAuth2 client credentials too.
        sim.require_platform_oauth(3600);
        let dir = tempdir();
        let mut env = credential_env(kind, &sim, &db, &dir).await;
        let token_url = format!("{}/oauth2/token", sim.endpoints().platform);
        for (k, v) in [
            ("RUST_LOG", "trace"),
            ("REGSYNC__SOURCE__AUTH", "oauth2"),
            ("REGSYNC__SOURCE__OAUTH2__TOKEN_URL", token_url.as_str()),
            ("REGSYNC__SOURCE__OAUTH2__CLIENT_ID", regsync_sim::PLATFORM_CLIENT_ID),
            ("REGSYNC__SOURCE__OAUTH2__CLIENT_SECRET", regsync_sim::PLATFORM_CLIENT_SECRET),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }

        let once = tokio::task::spawn_blocking({
            let (db, sim) = (db.clone(), sim.clone());
            move || {
                let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                crate::helpers::regsync_cli(&["once"], &db, &sim, &pairs)
            }
        })
        .await
        .expect("joined");

        let output = format!("{}{}", String::from_utf8_lossy(&once.stdout), String::from_utf8_lossy(&once.stderr));
        assert!(once.status.success(), "{kind}: {output:.3000}");
        assert!(output.len() > 10_000, "{kind}: trace logging produced output");
        assert_eq!(sim.stats().registrations, 9, "{kind}: every meeting registered");
        let pool = sqlx::PgPool::connect(&db).await.expect("db");
        let dump: String = sqlx::query_scalar(
            "SELECT concat_ws(' ', (SELECT string_agg(t::text, ' ') FROM graph_calls t),
                                   (SELECT string_agg(t::text, ' ') FROM meetings t),
                                   (SELECT string_agg(t::text, ' ') FROM sync_runs t),
                                   (SELECT string_agg(encode(sealed_refresh_token, 'escape')
                                                      || coalesce(encode(sealed_access_token, 'escape'), ''), ' ')
                                    FROM sign_ins))",
        )
        .fetch_one(&pool)
        .await
        .expect("everything regsync stored");
        let secrets = sim.issued_secrets();
        assert!(secrets.len() > 1, "{kind}: tokens were issued");
        let fixed = [regsync_sim::CLIENT_SECRET, regsync_sim::PLATFORM_CLIENT_SECRET, key_body.as_str()];
        for secret in
            secrets.iter().map(String::as_str).chain(fixed).chain([crate::delegated::encryption_key().as_str()])
        {
            assert!(!output.contains(secret), "{kind}: a secret is in the logs");
            assert!(!dump.contains(secret), "{kind}: a secret is in the database");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
