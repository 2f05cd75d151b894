//! PostgreSQL over TLS: every sslmode a deployment uses, against a server
//! whose certificate a CA made by the test signed.

use regsync_sim::devdb::Cluster;
use sqlx::Row;

/// A CA, and a certificate for 127.0.0.1 it signed (with its key).
struct Pki {
    ca: String,
    certificate: String,
    private_key: String,
}

fn pki() -> Pki {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "regsync test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key")).expect("CA");
    let server_key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "127.0.0.1");
    let certificate = params.signed_by(&server_key, &ca).expect("signed");
    Pki { ca: ca.pem(), certificate: certificate.pem(), private_key: server_key.serialize_pem() }
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("regsync-tls-{}-{name}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, text).expect("written");
    path
}

/// Connects the way regsync does and says whether the session is encrypted.
async fn connect(url: &str) -> Result<bool, String> {
    let settings = regsync::config::DatabaseSettings { url: Some(url.to_owned().into()), ..Default::default() };
    let pool = regsync::store::connect(&settings).map_err(|e| e.to_string())?;
    regsync::store::migrate(&pool).await.map_err(|e| e.to_string())?;
    let row = sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<bool, _>("ssl"))
}

#[tokio::test]
async fn every_sslmode_works_against_a_tls_server_and_verify_modes_check_the_ca() {
    let pki = pki();
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start_with_tls(&pki.certificate, &pki.private_key).map(|c| (c, pki.ca))
    })
    .await
    .expect("joined")
    .expect("a TLS cluster");
    let (cluster, ca) = cluster;
    let ca_file = write_temp("ca.pem", &ca);
    let stranger = write_temp("other-ca.pem", &self::pki().ca);
    let base = cluster.url().to_owned();

    for mode in ["require", "verify-ca", "verify-full"] {
        let url = format!("{base}?sslmode={mode}&sslrootcert={}", ca_file.display());
        assert_eq!(connect(&url).await, Ok(true), "sslmode={mode}");
    }
    let wrong_ca = format!("{base}?sslmode=verify-full&sslrootcert={}", stranger.display());
    let refused = tokio::time::timeout(std::time::Duration::from_secs(30), connect(&wrong_ca))
        .await
        .expect("an answer, not a wait");
    assert!(refused.is_err(), "a server the CA did not sign is refused");
    let _ = std::fs::remove_file(ca_file);
    let _ = std::fs::remove_file(stranger);
}

#[tokio::test]
async fn run_refuses_a_server_its_ca_did_not_sign_at_once_instead_of_waiting() {
    let pki = pki();
    let (cluster, _) = tokio::task::spawn_blocking(move || {
        Cluster::start_with_tls(&pki.certificate, &pki.private_key).map(|c| (c, pki.ca))
    })
    .await
    .expect("joined")
    .expect("a TLS cluster");
    let stranger = write_temp("other-ca.pem", &self::pki().ca);
    let sim = regsync_sim::Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    let url = format!("{}?sslmode=verify-full&sslrootcert={}", cluster.url(), stranger.display());
    let listen = format!("127.0.0.1:{}", crate::helpers::free_port());

    let run = tokio::task::spawn_blocking(move || {
        let extra = [("REGSYNC__SERVER__LISTEN", listen.as_str())];
        crate::helpers::regsync_cli_within(&["run"], &url, &sim, &extra, std::time::Duration::from_secs(60))
    });
    let out = run.await.expect("joined").expect("regsync run ended by itself");

    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sslrootcert"), "{err}");
    let _ = std::fs::remove_file(stranger);
}
