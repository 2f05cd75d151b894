//! Organizers' tokens under delegated sign-in. Each process keeps the
//! access tokens it holds in memory; the database keeps them too, sealed,
//! with the refresh token. A token near expiry is refreshed under the
//! organizer's row lock (`store::sign_ins::lock_for_refresh`): across every
//! replica a refresh token is redeemed exactly once, and a replica that
//! waited for the lock finds the new access token stored and uses it. In one
//! process, one task per organizer refreshes while the others wait for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use secrecy::SecretString;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::domain::OrganizerId;
use crate::graph::{self, token_refresh_in};
use crate::sealed::Sealer;
use crate::store::sign_ins::{self, SealedTokens, SignIn};
use crate::{sealed, store};

/// Token-endpoint errors that say the organizer must sign in again
/// (RFC 6749 `invalid_grant`; OpenID Connect's `interaction_required`,
/// `login_required`, `consent_required`).
const USER_MUST_SIGN_IN: [&str; 4] = ["invalid_grant", "interaction_required", "login_required", "consent_required"];

/// Why no token could be had for an organizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The identity platform, or the sign-in itself, refused.
    #[error(transparent)]
    Graph(graph::Error),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl From<graph::Error> for TokenError {
    fn from(e: graph::Error) -> Self {
        Self::Graph(e)
    }
}

/// An access token held in memory, and when to stop using it.
struct Held {
    token: Arc<SecretString>,
    refresh_at: Instant,
    /// When the stored copy expires: which stored token this is.
    stored_expiry: chrono::DateTime<Utc>,
}

/// The organizers' tokens of one process.
pub struct SignIns {
    sealer: Sealer,
    held: Mutex<HashMap<String, Held>>,
    /// One refresh per organizer at a time in this process.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for SignIns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignIns")
    }
}

/// The associated data a sealed token is bound to.
pub fn seal_context(organizer: &str, kind: &str) -> String {
    format!("sign_ins/{organizer}/{kind}")
}

impl SignIns {
    /// Tokens sealed and opened with `sealer`.
    pub fn new(sealer: Sealer) -> Self {
        Self { sealer, held: Mutex::default(), flights: Mutex::default() }
    }

    /// A valid access token for `organizer`: held in memory, stored by
    /// another replica, or refreshed now.
    ///
    /// # Errors
    /// [`graph::Error::NotSignedIn`], [`graph::Error::SignInRevoked`], a
    /// token endpoint failure, or the database.
    pub async fn token(
        &self,
        pool: &PgPool,
        graph: &graph::Client,
        organizer: &OrganizerId,
    ) -> Result<Arc<SecretString>, TokenError> {
        let organizer = organizer.as_str();
        if let Some(token) = self.held(organizer) {
            return Ok(token);
        }
        let flight = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            flights.entry(organizer.to_owned()).or_default().clone()
        };
        let _one_at_a_time = flight.lock().await;
        if let Some(token) = self.held(organizer) {
            return Ok(token);
        }
        let not_signed_in = || graph::Error::NotSignedIn { organizer: organizer.to_owned() };
        // Another replica may have refreshed already: no lock needed to see.
        let stored = sign_ins::get(pool, organizer).await?.ok_or_else(not_signed_in)?;
        if let Some(token) = self.stored_access_token(&stored)? {
            return Ok(token);
        }
        let refresh = sign_ins::lock_for_refresh(pool, organizer).await?.ok_or_else(not_signed_in)?;
        // Under the lock: the replica that held it before may have stored
        // a fresh token, and spent the refresh token we read above.
        if let Some(token) = self.stored_access_token(&refresh.sign_in)? {
            return Ok(token);
        }
        let refresh_token = self
            .sealer
            .open(&refresh.sign_in.sealed_refresh_token, &seal_context(organizer, "refresh"))
            .map_err(|e| revoked(organizer, &e))?;
        match graph.refresh(&refresh_token).await {
            Ok(fresh) => {
                let access = self.sealer.seal(&fresh.access_token, &seal_context(organizer, "access"));
                let next = self.sealer.seal(&fresh.refresh_token, &seal_context(organizer, "refresh"));
                let (access, next) =
                    (access.map_err(|e| revoked(organizer, &e))?, next.map_err(|e| revoked(organizer, &e))?);
                let expires_at =
                    Utc::now() + chrono::Duration::seconds(i64::try_from(fresh.expires_in).unwrap_or(3600));
                let tokens = SealedTokens {
                    refresh_token: &next,
                    access_token: &access,
                    access_expires_at: expires_at,
                    scopes: fresh.scopes.as_deref(),
                };
                refresh.store(&tokens).await?;
                tracing::info!(organizer, "refreshed the organizer's sign-in");
                Ok(self.hold(organizer, fresh.access_token, token_refresh_in(fresh.expires_in), expires_at))
            }
            // The organizer's own sign-in is refused (revoked, expired, or a
            // Conditional Access change that wants them back): theirs to
            // fix, nobody else's.
            Err(graph::Error::Token { error, detail, .. }) if USER_MUST_SIGN_IN.contains(&error.as_str()) => {
                let reason = format!("{error}: {detail}");
                refresh.revoke(&reason).await?;
                tracing::error!(organizer, reason, "the organizer's sign-in was refused; they must sign in again");
                Err(graph::Error::SignInRevoked { organizer: organizer.to_owned(), detail: reason }.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Drops the tokens held for organizers who signed out (`regsync
    /// logout`, in any process) or whose sign-in was refused since: read at
    /// the start of every reconcile pass, so a logout takes effect in every
    /// replica within one reconcile interval.
    ///
    /// # Errors
    /// The database failed.
    pub async fn drop_signed_out(&self, pool: &PgPool) -> Result<(), store::Error> {
        if self.held.lock().unwrap_or_else(|p| p.into_inner()).is_empty() {
            return Ok(());
        }
        let usable: std::collections::HashSet<String> = sign_ins::usable_organizers(pool).await?.into_iter().collect();
        self.held.lock().unwrap_or_else(|p| p.into_inner()).retain(|organizer, _| usable.contains(organizer));
        Ok(())
    }

    /// Graph answered 401 to `organizer`'s token: it is dropped here and,
    /// if it is still the stored one, from the database (compare-and-clear),
    /// so the next use really refreshes instead of reading it back.
    ///
    /// # Errors
    /// The database failed.
    pub async fn invalidate(&self, pool: &PgPool, organizer: &OrganizerId) -> Result<(), store::Error> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(organizer.as_str());
        if let Some(held) = held {
            sign_ins::clear_access_token(pool, organizer.as_str(), held.stored_expiry).await?;
        }
        Ok(())
    }

    fn held(&self, organizer: &str) -> Option<Arc<SecretString>> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.get(organizer).filter(|h| Instant::now() < h.refresh_at).map(|h| h.token.clone())
    }

    fn hold(
        &self,
        organizer: &str,
        token: SecretString,
        refresh_in: Duration,
        stored_expiry: chrono::DateTime<Utc>,
    ) -> Arc<SecretString> {
        let token = Arc::new(token);
        let held = Held { token: token.clone(), refresh_at: Instant::now() + refresh_in, stored_expiry };
        self.held.lock().unwrap_or_else(|p| p.into_inner()).insert(organizer.to_owned(), held);
        token
    }

    /// The stored access token, when the sign-in works and it is not near
    /// expiry (by the same margin as any token).
    fn stored_access_token(&self, stored: &SignIn) -> Result<Option<Arc<SecretString>>, TokenError> {
        let organizer = stored.organizer_id.as_str();
        if let Some(reason) = &stored.revoked_reason {
            return Err(graph::Error::SignInRevoked { organizer: organizer.to_owned(), detail: reason.clone() }.into());
        }
        let (Some(sealed), Some(expires_at)) = (&stored.sealed_access_token, stored.access_expires_at) else {
            return Ok(None);
        };
        let left = (expires_at - Utc::now()).num_seconds();
        let Ok(left) = u64::try_from(left) else { return Ok(None) };
        // The margin of a token with this much life left, from now.
        let refresh_in = token_refresh_in(left);
        if refresh_in.is_zero() {
            return Ok(None);
        }
        let token = self.sealer.open(sealed, &seal_context(organizer, "access")).map_err(|e| revoked(organizer, &e))?;
        Ok(Some(self.hold(organizer, token, refresh_in, expires_at)))
    }
}

fn revoked(organizer: &str, e: &sealed::Error) -> TokenError {
    graph::Error::SignInRevoked { organizer: organizer.to_owned(), detail: e.to_string() }.into()
}
