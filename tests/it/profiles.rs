//! Each configuration in `config/examples/` loads and validates, and syncs
//! the simulator's meetings served in that platform's documented shape:
//! its auth, its paging, its statuses, and the organizer's e-mail and the
//! Teams join link where that platform keeps them.

use std::collections::HashMap;
use std::path::Path;

use regsync::config::{Scope, Settings};

use crate::helpers::spawn_app_with;

/// The profile `name`, loaded as an operator would: the file, with the
/// addresses and secrets from the environment (here: the simulator's).
fn load_profile(name: &str, platform: &str) -> Settings {
    let base = format!("{platform}/profiles/{name}");
    let mut env: HashMap<String, String> = [
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/unused"),
        ("REGSYNC__GRAPH__TENANT_ID", "tenant"),
        ("REGSYNC__GRAPH__CLIENT_ID", "client"),
        ("REGSYNC__GRAPH__CLIENT_SECRET", "secret"),
        ("REGSYNC__SOURCE__PAGE_SIZE", "10"),
        ("REGSYNC__SOURCE__OAUTH2__CLIENT_ID", regsync_sim::PLATFORM_CLIENT_ID),
        ("REGSYNC__SOURCE__OAUTH2__CLIENT_SECRET", regsync_sim::PLATFORM_CLIENT_SECRET),
        ("REGSYNC__SOURCE__TOKEN", regsync_sim::profiles::INDICO_TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    env.insert("REGSYNC__SOURCE__BASE_URL".into(), base);
    env.insert("REGSYNC__SOURCE__OAUTH2__TOKEN_URL".into(), format!("{platform}/oauth2/token"));
    for (header, value) in [regsync_sim::profiles::ON24_KEY, regsync_sim::profiles::ON24_SECRET] {
        env.insert(format!("REGSYNC__SOURCE__HEADERS__{}", header.to_uppercase()), value.into());
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("config/examples/{name}.toml"));
    Settings::load_from(Some(&path), &env, Scope::Everything)
        .unwrap_or_else(|e| panic!("config/examples/{name}.toml does not load: {e}"))
}

#[tokio::test]
async fn every_example_profile_loads_validates_and_syncs_its_platforms_shape() {
    for name in ["cvent", "on24", "indico", "swoogo"] {
        let app = spawn_app_with(|s| {
            let profile = load_profile(name, s.source.base_url.as_deref().unwrap_or_default());
            s.source = profile.source;
            s.sync.on_missing = profile.sync.on_missing;
        })
        .await;
        if matches!(name, "cvent" | "swoogo") {
            app.sim.require_platform_oauth(3600);
        }
        app.sim.seed(25); // five organizers; 23 active, 2 cancelled

        let report = app.tick().await;

        assert_eq!(report.poll.partial, None, "{name}");
        assert_eq!((report.poll.pages, report.poll.seen, report.poll.rejected), (3, 25, 0), "{name}");
        // Indico has no status: its cancelled events are simply listed.
        let registered = if name == "indico" { 25 } else { 23 };
        assert_eq!(app.sim.stats().registrations, registered, "{name}");
        let lookups = app.sim.lookups();
        assert_eq!(lookups.iter().filter(|l| l.kind == "user").count(), 5, "{name}: once per organizer");
        assert_eq!(lookups.iter().filter(|l| l.kind == "meeting").count(), registered, "{name}: once per meeting");

        let graph_requests = app.sim.log().len();
        app.tick().await;
        assert_eq!(
            (app.sim.log().len(), app.sim.lookups().len()),
            (graph_requests, lookups.len()),
            "{name}: a steady cycle makes no Graph call"
        );
    }
}
