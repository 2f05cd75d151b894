//! Resolving what the platform named by UPN or join link to Graph's ids,
//! before a meeting's plan: remembered from an earlier meeting, or looked
//! up through the same gate, audit and error policy as every Graph call.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use super::{Cleared, Step, Work};
use crate::domain::RowState;
use crate::domain::{FailureCategory, Lookup};
use crate::store::{self};
use crate::sync::engine::Failure;

/// A lookup's kind and value.
type LookupKey = (&'static str, String);

/// The lookups this process has under way, one lock per value.
#[derive(Default)]
pub struct LookupsInFlight(Mutex<HashMap<LookupKey, Arc<tokio::sync::Mutex<()>>>>);

impl LookupsInFlight {
    /// Waits until no other task of this process resolves `lookup`'s value.
    async fn lock(&self, lookup: &Lookup) -> InFlight<'_> {
        let key = (lookup.kind(), lookup.value().to_owned());
        let value = self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_default().clone();
        let guard = value.clone().lock_owned().await;
        InFlight { lookups: self, key, value, _guard: guard }
    }
}

/// Held while one value is resolved; forgets the value's lock when no
/// other task waits for it.
struct InFlight<'a> {
    lookups: &'a LookupsInFlight,
    key: LookupKey,
    value: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut map = self.lookups.0.lock().unwrap_or_else(|p| p.into_inner());
        // The map, this handle and the guard: nobody else wants it.
        if Arc::strong_count(&self.value) <= 3 {
            map.remove(&self.key);
        }
    }
}

impl Work<'_> {
    /// Resolves what the platform named by UPN or join link to Graph's id:
    /// remembered from another meeting, or looked up through the same gate
    /// as every request. Graph finding nothing fails the meeting with the
    /// value that did not resolve.
    pub(super) async fn resolve(&mut self, lookup: Lookup) -> Step {
        let pool = &self.ctx.pool;
        // One lookup per value in this process: meetings claimed together
        // that name one organizer wait for the first to resolve it.
        let _one_at_a_time = self.ctx.lookups.lock(&lookup).await;
        let max_age = self.ctx.settings.graph.resolution_max_age();
        let graph_id = match store::resolutions::remembered(pool, &lookup, max_age).await {
            Err(e) => return ControlFlow::Break(Err(e.into())),
            Ok(Some(id)) => id,
            // Signed-in organizers are known by the UPN they signed in with;
            // no Graph call (and no application permission) is needed.
            Ok(None) if self.ctx.sign_ins.is_some() && matches!(lookup, Lookup::Organizer { .. }) => {
                match store::sign_ins::organizer_by_upn(pool, lookup.value()).await {
                    Err(e) => return ControlFlow::Break(Err(e.into())),
                    Ok(Some(id)) => id,
                    Ok(None) => {
                        let reason = format!(
                            "organizer {:?} has not signed in: run `regsync login` and sign in as that user \
                             (with delegated sign-in, organizers named by UPN are found among the signed-in users)",
                            lookup.value()
                        );
                        let failure = Failure::new(reason, FailureCategory::Auth);
                        return ControlFlow::Break(self.record(RowState::Failed, Some(failure)).await);
                    }
                }
            }
            Ok(None) => {
                let organizer = self.claimed.location.organizer.clone();
                let permit = self.take_permit(&organizer).await?;
                let slot = self.ctx.throttle.slot().await;
                let Some(Cleared { permit, probe }) = self.pass_gate(false, None, permit).await? else {
                    return ControlFlow::Continue(());
                };
                let result = self.ctx.graph.resolve(permit, &lookup, &mut self.calls).await;
                self.ctx.throttle.answered(pool, &result, probe, crate::sync::throttle::Call::Other).await;
                drop(slot);
                match result {
                    Ok(Some(id)) => id,
                    Ok(None) => {
                        let reason = lookup.not_found(&self.claimed.external_id);
                        tracing::warn!(
                            kind = lookup.kind(),
                            value = lookup.value(),
                            "Graph found nothing to resolve to"
                        );
                        let failure = Failure::new(reason, FailureCategory::PlatformData);
                        return ControlFlow::Break(self.record(RowState::Failed, Some(failure)).await);
                    }
                    Err(e) => return self.learn(Err(e), false).await,
                }
            }
        };
        match store::resolutions::remember(pool, &self.claimed, &lookup, &graph_id).await {
            Err(e) => ControlFlow::Break(Err(e.into())),
            Ok(true) => {
                tracing::info!(kind = lookup.kind(), value = lookup.value(), graph_id, "resolved");
                self.claimed.resolved(&lookup, &graph_id);
                ControlFlow::Continue(())
            }
            // The lease is gone, or the platform renamed the meeting since
            // the claim: the outcome write sorts out which.
            Ok(false) => ControlFlow::Break(self.record(RowState::Pending, None).await),
        }
    }
}
