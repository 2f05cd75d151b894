//! Graph change notifications in place of polling statuses
//! (`notifications.public_url`): one replica per period keeps one
//! subscription per event on its registrations — created, renewed well
//! before the one-day expiry, deleted when the event no longer needs it —
//! and each notification (its `clientState` checked at the endpoint) reads
//! back the event it names. Lifecycle events: `missed` and
//! `subscriptionRemoved` read the event back (a reconcile of what may have
//! been lost; a removed subscription is made again), and
//! `reauthorizationRequired` renews at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Deserialize;

use super::readback::{read_event, AFTER_END};
use super::{Ctx, SyncError};
use crate::domain::{OrganizerId, VirtualEvent};
use crate::graph::{self, registrations_resource};
use crate::store::{self, subscriptions::Subscription};

/// How often the subscriptions are looked after.
const PERIOD: Duration = Duration::from_secs(60);
/// How long a subscription is asked for: Graph's most for virtual events
/// (one day), less a margin for clocks.
const LIFETIME: chrono::Duration = chrono::Duration::minutes(24 * 60 - 10);
/// Renewed once less than this is left.
const RENEW_WHEN_LEFT: chrono::Duration = chrono::Duration::hours(12);

/// One notification (a change, or a lifecycle event), as Graph sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// The subscription it is of.
    pub subscription_id: String,
    /// The secret the subscription was made with.
    #[serde(default)]
    pub client_state: Option<String>,
    /// `missed`, `reauthorizationRequired`, `subscriptionRemoved`; none for
    /// a change.
    #[serde(default)]
    pub lifecycle_event: Option<String>,
}

/// What looking after the subscriptions did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintained {
    /// Created (or adopted).
    pub created: u64,
    /// Renewed.
    pub renewed: u64,
    /// Deleted.
    pub deleted: u64,
    /// Failed (logged; tried again next period).
    pub failed: u64,
}

/// Looks after the subscriptions when the deployment's period has come.
///
/// # Errors
/// The database failed.
pub async fn when_due(ctx: &Arc<Ctx>) -> Result<Option<Maintained>, SyncError> {
    if !ctx.settings.notifications.enabled() || ctx.settings.graph.target.event_kind().is_none() {
        return Ok(None);
    }
    if !store::runs::claim_job(&ctx.pool, "subscriptions", PERIOD).await? {
        return Ok(None);
    }
    maintain(ctx).await.map(Some)
}

/// Creates the missing subscriptions, renews those near expiry, deletes
/// those no event needs.
///
/// # Errors
/// The database failed.
pub async fn maintain(ctx: &Arc<Ctx>) -> Result<Maintained, SyncError> {
    let mut report = Maintained::default();
    let Some(kind) = ctx.settings.graph.target.event_kind() else { return Ok(report) };
    let wanted = store::readback::enrolled_events(&ctx.pool, AFTER_END).await?;
    let held: BTreeMap<String, Subscription> =
        store::subscriptions::all(&ctx.pool).await?.into_iter().map(|s| (s.meeting_external_id.clone(), s)).collect();
    let wanted_ids: HashSet<&str> = wanted.iter().map(|e| e.meeting_external_id.as_str()).collect();
    for event in &wanted {
        let at = VirtualEvent { kind, id: event.event_id.clone() };
        let organizer = OrganizerId(event.organizer_id.clone().unwrap_or_default());
        let outcome = match held.get(&event.meeting_external_id).filter(|s| s.event_id == event.event_id) {
            None => subscribe(ctx, &event.meeting_external_id, &at, &organizer).await?.map(|()| &mut report.created),
            Some(s) if s.expires_at - Utc::now() < RENEW_WHEN_LEFT => {
                renew(ctx, s, &at, &organizer).await?.map(|()| &mut report.renewed)
            }
            Some(_) => continue,
        };
        match outcome {
            Ok(count) => *count += 1,
            Err(why) => {
                report.failed += 1;
                tracing::warn!(meeting = event.meeting_external_id, %at, error = why, "cannot keep the subscription");
            }
        }
    }
    for stale in held.values().filter(|s| !wanted_ids.contains(s.meeting_external_id.as_str())) {
        let mut calls = Vec::new();
        match ctx.graph.permit().await {
            Ok(permit) => match ctx.graph.unsubscribe(permit, &stale.subscription_id, &mut calls).await {
                Ok(()) => {
                    store::subscriptions::forget(&ctx.pool, &stale.subscription_id).await?;
                    report.deleted += 1;
                }
                Err(e) => tracing::warn!(subscription = stale.subscription_id, error = %e, "cannot delete"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot delete a subscription without a token"),
        }
    }
    Ok(report)
}

/// Subscribes to `event`'s registrations (adopting this app's existing
/// subscription when Graph says there is one: a create whose answer was
/// lost), then reads it back once: changes before it are not announced.
async fn subscribe(
    ctx: &Arc<Ctx>,
    meeting: &str,
    event: &VirtualEvent,
    organizer: &OrganizerId,
) -> Result<Result<(), String>, SyncError> {
    let settings = &ctx.settings.notifications;
    let Some(client_state) = settings.client_state.as_ref() else {
        return Ok(Err("notifications.client_state is not set".into()));
    };
    let mut calls = Vec::new();
    let expires = Utc::now() + LIFETIME;
    let made = match ctx.graph.permit().await {
        Err(e) => Err(e),
        Ok(permit) => {
            match ctx.graph.subscribe(permit, event, &settings.public_url, client_state, expires, &mut calls).await {
                Err(graph::Error::Conflict { .. }) => adopt(ctx, event, &mut calls).await,
                other => other,
            }
        }
    };
    let made = match made {
        Ok(made) => made,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let subscription = Subscription {
        meeting_external_id: meeting.to_owned(),
        event_id: event.id.clone(),
        subscription_id: made.id,
        expires_at: made.expiration_date_time,
    };
    store::subscriptions::put(&ctx.pool, &subscription).await?;
    Ok(read_event(ctx, meeting, event, Some(organizer.as_str())).await?.map(drop))
}

/// This app's subscription on `event`'s registrations, renewed.
async fn adopt(
    ctx: &Arc<Ctx>,
    event: &VirtualEvent,
    calls: &mut Vec<crate::domain::CallRecord>,
) -> Result<graph::GraphSubscription, graph::Error> {
    let resource = registrations_resource(event);
    let mine = ctx.graph.subscriptions(ctx.graph.permit().await?, calls).await?;
    let Some(mut found) = mine.into_iter().find(|s| s.resource.trim_start_matches('/') == resource) else {
        return Err(graph::Error::Transient {
            status: Some(409),
            may_have_acted: false,
            detail: format!("Graph holds a subscription on {resource} that this app does not list"),
        });
    };
    let expires = Utc::now() + LIFETIME;
    if let Some(renewed) = ctx.graph.renew_subscription(ctx.graph.permit().await?, &found.id, expires, calls).await? {
        found.expiration_date_time = renewed;
    }
    Ok(found)
}

/// Renews `s`; one Graph no longer holds is made again.
async fn renew(
    ctx: &Arc<Ctx>,
    s: &Subscription,
    event: &VirtualEvent,
    organizer: &OrganizerId,
) -> Result<Result<(), String>, SyncError> {
    let mut calls = Vec::new();
    let renewed = match ctx.graph.permit().await {
        Err(e) => Err(e),
        Ok(permit) => ctx.graph.renew_subscription(permit, &s.subscription_id, Utc::now() + LIFETIME, &mut calls).await,
    };
    match renewed {
        Ok(Some(expires_at)) => {
            store::subscriptions::put(&ctx.pool, &Subscription { expires_at, ..s.clone() }).await?;
            Ok(Ok(()))
        }
        Ok(None) => {
            store::subscriptions::forget(&ctx.pool, &s.subscription_id).await?;
            subscribe(ctx, &s.meeting_external_id, event, organizer).await
        }
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// Acts on notifications whose `clientState` was checked: each event they
/// name is read back once; a lifecycle event first does what it asks.
///
/// # Errors
/// The database failed.
pub async fn receive(ctx: &Arc<Ctx>, notifications: Vec<Notification>) -> Result<(), SyncError> {
    let Some(kind) = ctx.settings.graph.target.event_kind() else { return Ok(()) };
    let mut events = BTreeMap::new();
    for n in notifications {
        let Some(s) = store::subscriptions::by_id(&ctx.pool, &n.subscription_id).await? else {
            tracing::info!(subscription = n.subscription_id, "a notification of a subscription regsync does not hold");
            continue;
        };
        match n.lifecycle_event.as_deref() {
            Some("reauthorizationRequired") => {
                store::subscriptions::renew_now(&ctx.pool, &s.subscription_id).await?;
                let at = VirtualEvent { kind, id: s.event_id.clone() };
                if let Err(why) = renew(ctx, &s, &at, &OrganizerId(String::new())).await? {
                    tracing::warn!(subscription = s.subscription_id, error = why, "cannot reauthorize");
                }
                continue;
            }
            Some("subscriptionRemoved") => store::subscriptions::forget(&ctx.pool, &s.subscription_id).await?,
            // `missed`, a change, or a lifecycle event yet to come: read back.
            _ => {}
        }
        events.insert(s.meeting_external_id.clone(), s.event_id.clone());
    }
    for (meeting, id) in events {
        let organizer = store::readback::organizer_of(&ctx.pool, &meeting).await?;
        let at = VirtualEvent { kind, id };
        if let Err(why) = read_event(ctx, &meeting, &at, organizer.as_deref()).await? {
            tracing::warn!(meeting, %at, error = why, "cannot read back the event a notification named");
        }
    }
    Ok(())
}
