//! Organizers' tokens under delegated sign-in. Each process keeps the
//! access tokens it holds in memory; the database keeps them too, sealed,
//! with the refresh token. A token near expiry is refreshed under the
//! organizer's refresh lease (`store::sign_ins::lease_refresh`, a deadline
//! in a column, no transaction open across the HTTP call): across every
//! replica a refresh token is redeemed once, and a replica that waited for
//! the lease finds the new access token stored and uses it. In one process,
//! one task per organizer refreshes while the others wait for it. A refresh
//! whose answer was lost is recorded; the next presents the same refresh
//! token (the only one there is) and, if refused, says why.

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
    /// How long a refresh may hold an organizer's lease: longer than the
    /// token request's timeout.
    refresh_lease: Duration,
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
    /// Tokens sealed and opened with `sealer`; a refresh leases the
    /// organizer's sign-in for `refresh_lease` (longer than the token
    /// request's timeout).
    pub fn new(sealer: Sealer, refresh_lease: Duration) -> Self {
        Self { sealer, held: Mutex::default(), flights: Mutex::default(), refresh_lease }
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
        let flight = self.flight(organizer);
        let _one_at_a_time = flight.lock().await;
        if let Some(token) = self.held(organizer) {
            return Ok(token);
        }
        let not_signed_in = || graph::Error::NotSignedIn { organizer: organizer.to_owned() };
        // Another replica may have refreshed already: no lease needed to see.
        let stored = sign_ins::get(pool, organizer).await?.ok_or_else(not_signed_in)?;
        if let Some(token) = self.stored_access_token(&stored)? {
            return Ok(token);
        }
        let lease = match self.lease(pool, organizer).await? {
            Ok(lease) => lease,
            Err(token) => return Ok(token),
        };
        // Under the lease: the holder before may have stored a fresh token,
        // and spent the refresh token read above.
        if let Some(token) = self.stored_access_token(&lease.sign_in)? {
            lease.release(pool, false).await?;
            return Ok(token);
        }
        self.redeem(pool, graph, organizer, &lease).await
    }

    /// Redeems the refresh token under `lease`: stores what it returns, or
    /// records why not (refused: the organizer must sign in again; no
    /// answer: it may have been spent).
    async fn redeem(
        &self,
        pool: &PgPool,
        graph: &graph::Client,
        organizer: &str,
        lease: &sign_ins::RefreshLease,
    ) -> Result<Arc<SecretString>, TokenError> {
        let refresh_token = self
            .sealer
            .open(&lease.sign_in.sealed_refresh_token, &seal_context(organizer, "refresh"))
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
                // The old refresh token is spent: the new one must be kept,
                // so the write is retried while the database is briefly away.
                if !store::with_retries(self.refresh_lease, || lease.store(pool, &tokens)).await? {
                    tracing::warn!(
                        organizer,
                        "the refresh lease passed to another process before the tokens were stored"
                    );
                }
                tracing::info!(organizer, "refreshed the organizer's sign-in");
                Ok(self.hold(organizer, fresh.access_token, token_refresh_in(fresh.expires_in), expires_at))
            }
            // The organizer's own sign-in is refused (revoked, expired, or a
            // Conditional Access change that wants them back): theirs to
            // fix, nobody else's.
            Err(graph::Error::Token { error, detail, .. }) if USER_MUST_SIGN_IN.contains(&error.as_str()) => {
                let mut reason = format!("{error}: {detail}");
                if let Some(since) = lease.unknown_since {
                    reason.push_str(&format!(
                        " (the answer to a refresh at {since} was lost: the identity platform may have redeemed the \
                         refresh token then and refuses it now)"
                    ));
                }
                lease.revoke(pool, &reason).await?;
                tracing::error!(organizer, reason, "the organizer's sign-in was refused; they must sign in again");
                Err(graph::Error::SignInRevoked { organizer: organizer.to_owned(), detail: reason }.into())
            }
            Err(e) => {
                // No answer, or a 5xx: the refresh token may have been
                // redeemed. The next refresh presents it again (the only one
                // there is) and, if refused, says why.
                let answer_lost = matches!(&e, graph::Error::Token { status, .. } if status.is_none_or(|s| s >= 500));
                if answer_lost {
                    tracing::warn!(organizer, error = %e, "a refresh's answer was lost; the next one tries again");
                }
                lease.release(pool, answer_lost).await?;
                Err(e.into())
            }
        }
    }

    /// The refresh lease of `organizer`, or (`Err`) the token another
    /// process stored while this one waited for its lease to end.
    async fn lease(
        &self,
        pool: &PgPool,
        organizer: &str,
    ) -> Result<Result<sign_ins::RefreshLease, Arc<SecretString>>, TokenError> {
        let holder = uuid::Uuid::new_v4();
        let mut wait = Duration::from_millis(50);
        let give_up = Instant::now() + self.refresh_lease * 2;
        loop {
            match sign_ins::lease_refresh(pool, organizer, holder, self.refresh_lease).await? {
                sign_ins::Leased::Ours(lease) => return Ok(Ok(lease)),
                sign_ins::Leased::Missing => {
                    return Err(graph::Error::NotSignedIn { organizer: organizer.to_owned() }.into())
                }
                sign_ins::Leased::Busy if Instant::now() >= give_up => {
                    return Err(graph::Error::Token {
                        status: None,
                        error: "temporarily_unavailable".into(),
                        detail: "another replica's refresh of this organizer's sign-in did not finish".into(),
                        hint: "it is tried again; check the replicas' access to the identity platform",
                        retry_after: None,
                    }
                    .into())
                }
                sign_ins::Leased::Busy => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                    let stored = sign_ins::get(pool, organizer).await?;
                    if let Some(token) = stored.as_ref().map(|s| self.stored_access_token(s)).transpose()?.flatten() {
                        return Ok(Err(token));
                    }
                }
            }
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
        // Under the organizer's flight: a task that wants a token meanwhile
        // waits until the stored copy is cleared, instead of reading the
        // refused token back from the database.
        let flight = self.flight(organizer.as_str());
        let _one_at_a_time = flight.lock().await;
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner()).remove(organizer.as_str());
        if let Some(held) = held {
            sign_ins::clear_access_token(pool, organizer.as_str(), held.stored_expiry).await?;
        }
        Ok(())
    }

    /// The lock of `organizer`'s token in this process.
    fn flight(&self, organizer: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.entry(organizer.to_owned()).or_default().clone()
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
