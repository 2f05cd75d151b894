//! Loading and validating settings.

use std::collections::HashMap;
use std::path::Path;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn complete_env() -> HashMap<String, String> {
    env(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/regsync"),
        ("REGSYNC__SOURCE__BASE_URL", "http://127.0.0.1:1"),
        ("REGSYNC__GRAPH__TENANT_ID", "tenant"),
        ("REGSYNC__GRAPH__CLIENT_ID", "client"),
        ("REGSYNC__GRAPH__CLIENT_SECRET", "s3cret"),
    ])
}

#[test]
fn environment_fills_every_required_key() {
    let settings = Settings::load_from(None, &complete_env(), Scope::Everything).expect("valid");
    assert_eq!(settings.graph.client_id.as_deref(), Some("client"));
    assert_eq!(settings.source.page_size, 200);
    assert_eq!(settings.graph.base_url, "https://graph.microsoft.com/beta");
}

#[test]
fn missing_keys_are_all_named_in_one_error() {
    let err = Settings::load_from(None, &HashMap::new(), Scope::Everything).unwrap_err().to_string();
    for key in ["database.url", "source.base_url", "graph.tenant_id", "graph.client_id", "graph.client_secret"] {
        assert!(err.contains(key), "{key} not named in {err}");
    }
}

#[test]
fn numbers_from_the_environment_are_parsed() {
    let mut vars = complete_env();
    vars.insert("REGSYNC__GRAPH__MAX_CONCURRENCY".into(), "9".into());
    let settings = Settings::load_from(None, &vars, Scope::Everything).expect("valid");
    assert_eq!(settings.graph.max_concurrency, 9);
}

#[test]
fn an_unknown_key_is_an_error_naming_it() {
    let mut vars = complete_env();
    vars.insert("REGSYNC__GRAPH__CLIENT_SECRT".into(), "typo".into());
    let err = Settings::load_from(None, &vars, Scope::Everything).unwrap_err().to_string();
    assert!(err.contains("client_secrt"), "{err}");
}

#[test]
fn a_malformed_number_names_the_key() {
    let mut vars = complete_env();
    vars.insert("REGSYNC__SYNC__MAX_ATTEMPTS".into(), "many".into());
    let err = Settings::load_from(None, &vars, Scope::Everything).unwrap_err().to_string();
    assert!(err.contains("max_attempts"), "{err}");
}

#[test]
fn a_timeout_longer_than_a_quarter_lease_is_rejected() {
    let mut vars = complete_env();
    vars.insert("REGSYNC__GRAPH__TIMEOUT_MS".into(), "60000".into());
    let err = Settings::load_from(None, &vars, Scope::Everything).unwrap_err().to_string();
    assert!(err.contains("graph.timeout_ms"), "{err}");
}

#[test]
fn the_client_secret_can_come_from_a_file_and_never_prints() {
    let dir = std::env::temp_dir().join(format!("regsync-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "from-file-secret\n").unwrap();
    let mut vars = complete_env();
    vars.remove("REGSYNC__GRAPH__CLIENT_SECRET");
    vars.insert("REGSYNC__GRAPH__CLIENT_SECRET_FILE".into(), file.display().to_string());
    let settings = Settings::load_from(None, &vars, Scope::Everything).expect("valid");
    assert_eq!(settings.graph.client_secret.as_ref().unwrap().expose_secret(), "from-file-secret");
    assert!(!format!("{settings:?}").contains("from-file-secret"));
    assert!(!format!("{settings:?}").contains("postgres://"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_shipped_default_file_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE);
    let settings = Settings::load_from(Some(&path), &complete_env(), Scope::Everything).expect("default.toml is valid");
    assert_eq!(settings.sync.poll_schedule, "0 */5 * * * *");
    assert_eq!(settings.sync.poll_period(), Duration::from_secs(300));
}

#[test]
fn a_toml_syntax_error_names_the_place_but_never_prints_the_line() {
    let dir = std::env::temp_dir().join(format!("regsync-cfg-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.toml");
    std::fs::write(&file, "[graph]\nclient_secret = \"hunter2-very-secret\n").unwrap();

    let err = Settings::load_from(Some(&file), &complete_env(), Scope::Everything).unwrap_err().to_string();

    assert!(!err.contains("hunter2"), "{err}");
    assert!(err.contains("broken.toml") && err.contains("line 2"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn secrets_from_the_environment_arrive_exactly_as_written() {
    for secret in ["0012345", "1e3", "true", "  spaced  ", "12345678901234567890123"] {
        let mut vars = complete_env();
        vars.insert("REGSYNC__GRAPH__CLIENT_SECRET".into(), secret.into());
        vars.insert("REGSYNC__SOURCE__AUTH".into(), "bearer".into());
        vars.insert("REGSYNC__SOURCE__TOKEN".into(), secret.into());
        let settings = Settings::load_from(None, &vars, Scope::Everything).expect("valid");
        assert_eq!(settings.graph.client_secret.as_ref().unwrap().expose_secret(), secret);
        assert_eq!(settings.source.token.as_ref().unwrap().expose_secret(), secret);
    }
}

#[test]
fn database_commands_need_only_the_database() {
    let vars = HashMap::from([("DATABASE_URL".to_owned(), "postgres://regsync@db/regsync".to_owned())]);
    assert!(Settings::load_from(None, &vars, Scope::Database).is_ok());

    let err = Settings::load_from(None, &HashMap::new(), Scope::Database).unwrap_err().to_string();
    assert!(err.contains("database.url is required"), "{err}");
    assert!(!err.contains("graph.") && !err.contains("source."), "{err}");
}

#[test]
fn the_database_url_and_password_can_come_from_files() {
    let dir = std::env::temp_dir().join(format!("regsync-config-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("url"), "postgres://regsync@db/regsync\n").expect("url file");
    std::fs::write(dir.join("password"), "s3cret\n").expect("password file");
    let vars = HashMap::from([
        ("REGSYNC__DATABASE__URL_FILE".to_owned(), dir.join("url").display().to_string()),
        ("REGSYNC__DATABASE__PASSWORD_FILE".to_owned(), dir.join("password").display().to_string()),
    ]);

    let settings = Settings::load_from(None, &vars, Scope::Database).expect("valid");

    let options = settings.database.connect_options().expect("options");
    assert_eq!(options.get_host(), "db");
    assert_eq!(options.get_username(), "regsync");
    assert_eq!(settings.database.password.as_ref().map(|p| p.expose_secret().to_owned()).as_deref(), Some("s3cret"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn log_variables_are_not_settings() {
    let mut vars = complete_env();
    vars.insert("REGSYNC__LOG__FORMAT".into(), "json".into());
    assert!(Settings::load_from(None, &vars, Scope::Everything).is_ok());
}

#[test]
fn platform_credentials_go_over_plain_http_only_to_a_loopback_host() {
    let with = |base_url: &str, auth: &str| {
        let mut vars = complete_env();
        vars.insert("REGSYNC__SOURCE__BASE_URL".into(), base_url.into());
        vars.insert("REGSYNC__SOURCE__AUTH".into(), auth.into());
        vars.insert("REGSYNC__SOURCE__TOKEN".into(), "t0ken".into());
        Settings::load_from(None, &vars, Scope::Everything).map(|_| ()).map_err(|e| e.to_string())
    };
    let err = with("http://events.example.com/api", "bearer").unwrap_err();
    assert!(err.contains("source.base_url must be https"), "{err}");
    assert!(with("https://events.example.com/api", "bearer").is_ok());
    assert!(with("http://127.0.0.1:8080/api", "bearer").is_ok());
    assert!(with("http://[::1]:8080/api", "api_key").is_ok());
    assert!(with("http://events.example.com/api", "none").is_ok(), "nothing secret is sent");
}

#[test]
fn oauth2_needs_its_token_endpoint_and_credentials() {
    let mut vars = complete_env();
    vars.insert("REGSYNC__SOURCE__AUTH".into(), "oauth2".into());
    let err = Settings::load_from(None, &vars, Scope::Everything).unwrap_err().to_string();
    assert!(err.contains("source.oauth2.token_url, client_id and client_secret"), "{err}");
    vars.insert("REGSYNC__SOURCE__OAUTH2__TOKEN_URL".into(), "http://platform.example/token".into());
    vars.insert("REGSYNC__SOURCE__OAUTH2__CLIENT_ID".into(), "app".into());
    vars.insert("REGSYNC__SOURCE__OAUTH2__CLIENT_SECRET".into(), "s3cret".into());
    let err = Settings::load_from(None, &vars, Scope::Everything).unwrap_err().to_string();
    assert!(err.contains("source.oauth2.token_url must be https"), "{err}");
}

/// The one error line of `vars` on top of a complete environment.
fn refused_with(vars: &[(&str, &str)]) -> String {
    let mut all = complete_env();
    all.extend(env(vars));
    match Settings::load_from(None, &all, Scope::Everything) {
        Err(Error::Invalid(lines)) => {
            assert_eq!(lines.len(), 1, "one line: {lines:?}");
            lines[0].clone()
        }
        other => panic!("expected one invalid key, got {other:?}"),
    }
}

#[test]
fn graph_credentials_go_over_plain_http_only_to_a_loopback_host() {
    let line = refused_with(&[("REGSYNC__GRAPH__AUTHORITY_URL", "http://login.example.com")]);
    assert!(line.starts_with("graph.authority_url must be https"), "{line}");
    let line = refused_with(&[("REGSYNC__GRAPH__BASE_URL", "http://graph.microsoft.com/beta")]);
    assert!(line.starts_with("graph.base_url must be https"), "{line}");

    let mut loopback = complete_env();
    loopback.insert("REGSYNC__GRAPH__BASE_URL".into(), "http://127.0.0.1:9/graph/beta".into());
    loopback.insert("REGSYNC__GRAPH__AUTHORITY_URL".into(), "http://localhost:9/login".into());
    Settings::load_from(None, &loopback, Scope::Everything).expect("a simulator on this machine");
}

#[test]
fn a_scope_for_another_graph_host_is_refused() {
    let line = refused_with(&[("REGSYNC__GRAPH__SCOPE", "https://graph.microsoft.us/.default")]);
    assert!(line.starts_with("graph.scope") && line.contains("graph.microsoft.com"), "{line}");
}

#[test]
fn a_root_other_than_beta_is_refused_with_the_reason() {
    let line = refused_with(&[("REGSYNC__GRAPH__BASE_URL", "https://graph.microsoft.com/v1.0")]);
    assert!(line.starts_with("graph.base_url must be Graph's beta root") && line.contains("only in beta"), "{line}");
}

#[test]
fn a_cloud_sets_its_hosts_together_and_only_the_global_cloud_has_the_api() {
    let line = refused_with(&[("REGSYNC__GRAPH__CLOUD", "usgov-dod")]);
    assert!(line.starts_with("graph.cloud is \"usgov-dod\"") && line.contains("only in the global cloud"), "{line}");
    let mut settings = Settings::default();
    settings.graph.cloud = Cloud::UsgovDod;
    settings.graph.apply_cloud();
    assert_eq!(settings.graph.base_url, "https://dod-graph.microsoft.us/beta");
    assert_eq!(settings.graph.authority_url, "https://login.microsoftonline.us");
    assert_eq!(settings.graph.scope, "https://dod-graph.microsoft.us/.default");
    let mut explicit = Settings::default();
    explicit.graph.cloud = Cloud::China;
    explicit.graph.authority_url = "https://login.chinacloudapi.cn".into();
    explicit.graph.apply_cloud();
    assert_eq!(explicit.graph.authority_url, "https://login.chinacloudapi.cn", "an explicit value wins");
    assert_eq!(explicit.graph.base_url, "https://microsoftgraph.chinacloudapi.cn/beta");
}

#[test]
fn each_credential_kind_names_what_it_needs() {
    let line =
        refused_with(&[("REGSYNC__GRAPH__AUTH", "certificate"), ("REGSYNC__GRAPH__CERTIFICATE_PATH", "app.crt")]);
    assert!(line.starts_with("graph.private_key_path is required"), "{line}");
    let line = refused_with(&[("REGSYNC__GRAPH__AUTH", "federated")]);
    assert!(line.starts_with("graph.federated_token_file is required"), "{line}");
    let line = refused_with(&[("REGSYNC__GRAPH__AUTH", "delegated")]);
    assert!(line.starts_with("security.encryption_key is required"), "{line}");
    let line =
        refused_with(&[("REGSYNC__GRAPH__AUTH", "delegated"), ("REGSYNC__SECURITY__ENCRYPTION_KEY", "c2hvcnQ=")]);
    assert!(line.starts_with("security.encryption_key must be 32 bytes"), "{line}");

    // What Azure Workload Identity's webhook puts in the pod.
    let mut federated = complete_env();
    federated.remove("REGSYNC__GRAPH__CLIENT_ID");
    federated.remove("REGSYNC__GRAPH__TENANT_ID");
    federated.insert("REGSYNC__GRAPH__AUTH".into(), "federated".into());
    federated.insert("AZURE_FEDERATED_TOKEN_FILE".into(), "/var/run/secrets/azure/tokens/azure-identity-token".into());
    federated.insert("AZURE_CLIENT_ID".into(), "workload-app".into());
    federated.insert("AZURE_TENANT_ID".into(), "workload-tenant".into());
    let settings = Settings::load_from(None, &federated, Scope::Everything).expect("the conventional variables");
    assert_eq!(
        settings.graph.federated_token_file.as_deref(),
        Some(Path::new("/var/run/secrets/azure/tokens/azure-identity-token"))
    );
    assert_eq!(settings.graph.client_id.as_deref(), Some("workload-app"));
    assert_eq!(settings.graph.tenant_id.as_deref(), Some("workload-tenant"));
}

#[test]
fn the_webinar_target_takes_the_v1_root_and_application_permission() {
    let mut vars = complete_env();
    vars.insert("REGSYNC__GRAPH__TARGET".into(), "virtual_event_webinar".into());
    let settings = Settings::load_from(None, &vars, Scope::Everything).expect("the default root follows the target");
    assert_eq!(settings.graph.base_url, "https://graph.microsoft.com/v1.0");

    let line = refused_with(&[
        ("REGSYNC__GRAPH__TARGET", "virtual_event_webinar"),
        ("REGSYNC__GRAPH__BASE_URL", "https://graph.microsoft.com/beta/"),
    ]);
    assert!(
        line.starts_with("graph.base_url must be Graph's v1.0 root") && line.contains("virtual_event_webinar"),
        "{line}"
    );
    let line = refused_with(&[
        ("REGSYNC__GRAPH__TARGET", "virtual_event_webinar"),
        ("REGSYNC__GRAPH__AUTH", "delegated"),
        ("REGSYNC__SECURITY__ENCRYPTION_KEY", "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc="),
    ]);
    assert!(line.contains("cannot be \"delegated\""), "{line}");
}

#[test]
fn registrants_need_their_id_field_and_a_flat_list_its_meeting_field() {
    let line = refused_with(&[
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__REGISTRANTS__PATH", "/registrants"),
        ("REGSYNC__REGISTRANTS__FIELDS__MEETING_ID", ""),
    ]);
    assert!(line.starts_with("registrants.fields.meeting_id is required"), "{line}");
    let line = refused_with(&[
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__WRITEBACK__URL", "/x"),
        ("REGSYNC__WRITEBACK__BODY", "{join_web_url}"),
    ]);
    assert!(line.starts_with("writeback.body is not a JSON template"), "{line}");
    let line = refused_with(&[
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__WRITEBACK__URL", "/x"),
        ("REGSYNC__WRITEBACK__METHOD", "POST"),
    ]);
    assert!(line.starts_with("writeback.method \"POST\" is not PUT or PATCH"), "{line}");
    let line = refused_with(&[
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__WRITEBACK__STATUS_URL", "/s"),
        ("REGSYNC__WRITEBACK__STATUS_METHOD", "POST"),
    ]);
    assert!(line.starts_with("writeback.status_method \"POST\" is not PUT or PATCH"), "{line}");
    let line = refused_with(&[
        ("REGSYNC__REGISTRANTS__ENABLED", "true"),
        ("REGSYNC__WRITEBACK__STATUS_URL", "/s"),
        ("REGSYNC__WRITEBACK__STATUS_BODY", "{status}"),
    ]);
    assert!(line.starts_with("writeback.status_body is not a JSON template"), "{line}");
}

#[test]
fn a_webhook_listener_needs_a_secret_of_its_own_address_and_an_incremental_listing_a_modification_time() {
    let err = refused_with(&[("REGSYNC__HOOKS__LISTEN", "127.0.0.1:9443")]);
    assert!(err.contains("hooks.secret is required"), "{err}");
    let secret = ("REGSYNC__HOOKS__SECRET", "0123456789abcdef");
    let err = refused_with(&[("REGSYNC__HOOKS__LISTEN", "127.0.0.1:9090"), secret]);
    assert!(err.contains("hooks.listen must differ from server.listen"), "{err}");
    let err = refused_with(&[("REGSYNC__HOOKS__LISTEN", "127.0.0.1:9443"), ("REGSYNC__HOOKS__SECRET", "short")]);
    assert!(err.contains("hooks.secret is 5 bytes"), "{err}");
    assert!(!err.contains("short"), "the secret is never printed: {err}");
    let err = refused_with(&[
        ("REGSYNC__SOURCE__CHANGED_SINCE_PARAM", "changed_since"),
        ("REGSYNC__SOURCE__FIELDS__UPDATED_AT", ""),
    ]);
    assert!(err.contains("needs source.fields.updated_at"), "{err}");
    let err = refused_with(&[("REGSYNC__SYNC__FULL_LISTING_SCHEDULE", "nightly")]);
    assert!(err.contains("sync.full_listing_schedule \"nightly\" is not a cron expression"), "{err}");
}
