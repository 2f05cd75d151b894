//! Where settings come from: built-in defaults, then the file, then the
//! environment, then secret files.

use std::collections::HashMap;
use std::path::Path;

use secrecy::SecretString;

use super::{Error, Scope, Settings, DEFAULT_FILE};

impl Settings {
    /// Loads `path` (or `config/default.toml` when present), then the process
    /// environment, then validates.
    ///
    /// # Errors
    /// A file or variable that does not parse, an unreadable secret file, or
    /// any invalid setting (all reported at once).
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        Self::load_for(path, Scope::Everything)
    }

    /// [`Settings::load`] checking only what `scope` needs.
    ///
    /// # Errors
    /// As [`Settings::load`], for the settings in `scope`.
    pub fn load_for(path: Option<&Path>, scope: Scope) -> Result<Self, Error> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(path, &env, scope)
    }

    /// [`Settings::load_for`] with the environment given as a map (for tests).
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_from(path: Option<&Path>, env: &HashMap<String, String>, scope: Scope) -> Result<Self, Error> {
        let file = match path {
            Some(path) => Some(config::File::from(path).required(true)),
            None if Path::new(DEFAULT_FILE).exists() => Some(config::File::with_name(DEFAULT_FILE)),
            None => None,
        };
        // REGSYNC__LOG__* configure logging, which starts before settings
        // load (`main` reads them); they are not settings.
        let regsync_env: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("REGSYNC__") && !k.starts_with("REGSYNC__LOG__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(file);
        }
        let layered = builder
            .add_source(
                config::Environment::with_prefix("REGSYNC")
                    .prefix_separator("__")
                    .separator("__")
                    // Values stay text until a typed key reads them: a
                    // secret such as 0012345 must arrive as written.
                    .try_parsing(false)
                    .source(Some(regsync_env)),
            )
            .build()
            .map_err(redact_file_error)?;
        let mut settings: Settings = layered.try_deserialize()?;
        settings.graph.apply_cloud();
        if settings.graph.auth == super::GraphAuth::Federated {
            // Azure Workload Identity's conventions: its webhook projects the
            // token file and sets the app's ids in the pod's environment.
            let azure = |name: &str| env.get(name).filter(|v| !v.is_empty()).cloned();
            let g = &mut settings.graph;
            g.federated_token_file =
                g.federated_token_file.take().or_else(|| azure("AZURE_FEDERATED_TOKEN_FILE").map(Into::into));
            g.client_id = g.client_id.take().or_else(|| azure("AZURE_CLIENT_ID"));
            g.tenant_id = g.tenant_id.take().or_else(|| azure("AZURE_TENANT_ID"));
        }
        if settings.database.url.is_none() {
            settings.database.url =
                env.get("DATABASE_URL").filter(|url| !url.is_empty()).map(|url| SecretString::from(url.clone()));
        }
        settings.read_secret_files(scope)?;
        settings.validate_for(scope)?;
        Ok(settings)
    }

    fn read_secret_files(&mut self, scope: Scope) -> Result<(), Error> {
        fn read(key: &'static str, path: &Path) -> Result<SecretString, Error> {
            std::fs::read_to_string(path)
                .map(|s| SecretString::from(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|cause| Error::ReadSecretFile { key, path: path.to_owned(), cause })
        }
        if let Some(path) = &self.database.url_file {
            self.database.url = Some(read("database.url_file", path)?);
        }
        if let Some(path) = &self.database.password_file {
            self.database.password = Some(read("database.password_file", path)?);
        }
        // `login`, `logout` and the daemon all seal or unseal sign-ins.
        if let Some(path) = &self.security.encryption_key_file {
            self.security.encryption_key = Some(read("security.encryption_key_file", path)?);
        }
        if scope == Scope::Database {
            return Ok(());
        }
        if let Some(path) = &self.graph.client_secret_file {
            self.graph.client_secret = Some(read("graph.client_secret_file", path)?);
        }
        if let Some(path) = &self.notifications.client_state_file {
            self.notifications.client_state = Some(read("notifications.client_state_file", path)?);
        }
        if let Some(path) = &self.hooks.secret_file {
            self.hooks.secret = Some(read("hooks.secret_file", path)?);
        }
        if let Some(path) = &self.source.token_file {
            self.source.token = Some(read("source.token_file", path)?);
        }
        if let Some(path) = &self.source.oauth2.client_secret_file {
            self.source.oauth2.client_secret = Some(read("source.oauth2.client_secret_file", path)?);
        }
        if let Some(path) = &self.source.password_file {
            self.source.password = Some(read("source.password_file", path)?);
        }
        for (name, path) in &self.source.header_files {
            self.source.headers.insert(name.clone(), read("source.header_files", path)?);
        }
        Ok(())
    }
}

/// A file's parse error names the place and the problem, never the line
/// itself: the line may hold a secret.
fn redact_file_error(e: config::ConfigError) -> Error {
    match e {
        config::ConfigError::FileParse { uri, cause } => {
            let text = cause.to_string();
            // toml's text: the place, then the line quoted with `|`, then the problem.
            let quoted = |line: &&str| line.trim_start().starts_with('|') || line.contains(" | ");
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !quoted(l));
            let place = lines.next().unwrap_or("cannot be parsed").to_owned();
            let problem = lines.next_back().map(|p| format!(": {p}")).unwrap_or_default();
            Error::ParseFile { path: uri.unwrap_or_default(), detail: format!("{place}{problem}") }
        }
        other => Error::Load(other),
    }
}
