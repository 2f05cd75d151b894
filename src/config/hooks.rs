//! `[hooks]`: the endpoint where the platform pushes its changes.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// `[hooks]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HooksSettings {
    /// Address of the webhook listener, a socket of its own apart from
    /// `server.listen`; empty: off.
    pub listen: String,
    /// The shared secret of `Regsync-Signature`.
    pub secret: Option<SecretString>,
    /// A file holding the secret (wins over `secret`).
    pub secret_file: Option<PathBuf>,
    /// How far a signed timestamp may be from now.
    pub tolerance_secs: u64,
    /// Larger bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Deliveries per second one client address may make (a burst of as
    /// many); more are answered 429.
    pub client_rate_per_second: u32,
}

impl Default for HooksSettings {
    fn default() -> Self {
        Self {
            listen: String::new(),
            secret: None,
            secret_file: None,
            tolerance_secs: 300,
            max_body_bytes: 65_536,
            client_rate_per_second: 50,
        }
    }
}

impl HooksSettings {
    /// Whether the listener runs.
    pub fn enabled(&self) -> bool {
        !self.listen.trim().is_empty()
    }

    /// How far a signed timestamp may be from now.
    pub fn tolerance(&self) -> Duration {
        Duration::from_secs(self.tolerance_secs)
    }
}
