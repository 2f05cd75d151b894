//! Change-notification subscriptions on a virtual event's registrations:
//! created (Graph first validates both URLs), renewed before their one-day
//! expiry, listed (to adopt one whose create answer was lost, since Graph
//! keeps one per app per event and resource), deleted.
//! <https://learn.microsoft.com/graph/api/subscription-post-subscriptions>

use chrono::{DateTime, Utc};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::answer::{absent_on_404, unexpected};
use super::client::segment;
use super::{Client, Error, Permit};
use crate::domain::{CallRecord, VirtualEvent};

/// A subscription as Graph holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphSubscription {
    /// Its id.
    pub id: String,
    /// What it watches.
    pub resource: String,
    /// When it expires.
    pub expiration_date_time: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<GraphSubscription>,
}

/// The resource of `event`'s registrations, as a subscription names it.
pub fn registrations_resource(event: &VirtualEvent) -> String {
    format!("solutions/virtualEvents/{}/{}/registrations", event.kind.collection(), event.id)
}

impl Client {
    /// Subscribes `url` to changes of `event`'s registrations until
    /// `expires`, with `client_state`.
    ///
    /// # Errors
    /// Classified failures; `Conflict` when this app has one already.
    pub async fn subscribe(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        url: &str,
        client_state: &SecretString,
        expires: DateTime<Utc>,
        calls: &mut Vec<CallRecord>,
    ) -> Result<GraphSubscription, Error> {
        let body = json!({
            "changeType": "created,updated",
            "notificationUrl": url,
            "lifecycleNotificationUrl": url,
            "resource": registrations_resource(event),
            "expirationDateTime": expires.to_rfc3339(),
            "clientState": client_state.expose_secret(),
        });
        let (status, bytes) = self.send(permit, Method::POST, "/subscriptions".into(), Some(&body), calls).await?;
        serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))
    }

    /// Moves subscription `id`'s expiry to `expires`; `None`: Graph has no
    /// such subscription any more.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn renew_subscription(
        &self,
        permit: Permit,
        id: &str,
        expires: DateTime<Utc>,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let body = json!({"expirationDateTime": expires.to_rfc3339()});
        let path = format!("/subscriptions/{}", segment(id)?);
        let answer = self.send(permit, Method::PATCH, path, Some(&body), calls).await;
        let Some((status, bytes)) = absent_on_404(answer, calls)? else { return Ok(None) };
        let renewed: GraphSubscription =
            serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
        Ok(Some(renewed.expiration_date_time))
    }

    /// This app's subscriptions.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn subscriptions(
        &self,
        permit: Permit,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Vec<GraphSubscription>, Error> {
        let (status, bytes) = self.send(permit, Method::GET, "/subscriptions".into(), None, calls).await?;
        let page: Page = serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
        Ok(page.value)
    }

    /// Deletes subscription `id`; a 404 means it is gone already.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn unsubscribe(&self, permit: Permit, id: &str, calls: &mut Vec<CallRecord>) -> Result<(), Error> {
        let path = format!("/subscriptions/{}", segment(id)?);
        let answer = self.send(permit, Method::DELETE, path, None, calls).await;
        absent_on_404(answer, calls)?;
        Ok(())
    }
}
