//! `[notifications]`: Graph change notifications on each event's
//! registrations, in place of polling their statuses.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::Deserialize;

/// `[notifications]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsSettings {
    /// The https URL at which Graph reaches regsync's notification endpoint
    /// (`POST /hooks/graph` on `hooks.listen`, behind the operator's
    /// proxy); empty: statuses are polled (`registrants.status_readback_secs`).
    pub public_url: String,
    /// The secret `clientState` every notification must carry.
    pub client_state: Option<SecretString>,
    /// A file holding it (wins over `client_state`).
    pub client_state_file: Option<PathBuf>,
}

impl NotificationsSettings {
    /// Whether subscriptions are made.
    pub fn enabled(&self) -> bool {
        !self.public_url.trim().is_empty()
    }
}
