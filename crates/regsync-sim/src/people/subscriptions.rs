//! Graph change notifications on a virtual event's registrations, as
//! Microsoft documents them: `POST /subscriptions` validates both URLs
//! first (a POST with `?validationToken=` that must be echoed as text/plain
//! with 200 within 10 s), takes an expiry at most one day ahead, and keeps
//! one subscription per app per event and resource (a second is answered
//! 409: the simulator's reading of that limit); `PATCH` renews, `DELETE`
//! removes, `GET /subscriptions` lists. A registration changed in Teams is
//! announced to the notification URL with the subscription's
//! `clientState`; lifecycle events (`missed`, `reauthorizationRequired`,
//! `subscriptionRemoved`) go to the lifecycle URL.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::*;
use crate::Sim;

/// The longest a subscription on virtual-event resources may live.
const MAX_LIFETIME: chrono::Duration = chrono::Duration::days(1);

/// A subscription Graph holds.
#[derive(Debug, Clone)]
pub struct SimSubscription {
    /// Its id.
    pub id: String,
    /// `solutions/virtualEvents/{collection}/{id}/registrations`.
    pub resource: String,
    /// Where notifications go.
    pub notification_url: String,
    /// Where lifecycle notifications go.
    pub lifecycle_url: String,
    /// Carried by every notification.
    pub client_state: String,
    /// When it ends.
    pub expires: DateTime<Utc>,
}

/// One notification sent, and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotification {
    /// The subscription.
    pub subscription: String,
    /// `updated`, or the lifecycle event.
    pub kind: String,
    /// The status answered (0: none).
    pub status: u16,
}

/// The echo of a validation request: whether `url` answered 200 with
/// `token` as text/plain.
async fn validated(url: &str, token: &str) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a client");
    let Ok(mut url) = reqwest::Url::parse(url) else { return false };
    url.query_pairs_mut().append_pair("validationToken", token);
    match client.post(url).header("content-type", "text/plain").send().await {
        Ok(r) if r.status() == StatusCode::OK => {
            let plain = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/plain"));
            plain && r.text().await.is_ok_and(|body| body == token)
        }
        _ => false,
    }
}

fn to_graph(s: &SimSubscription) -> Value {
    json!({"id": s.id, "resource": s.resource, "changeType": "created,updated",
        "notificationUrl": s.notification_url, "lifecycleNotificationUrl": s.lifecycle_url,
        "expirationDateTime": s.expires.to_rfc3339()})
}

/// The expiry asked for, or Graph's refusal of it.
fn expiry(body: &Value) -> Result<DateTime<Utc>, &'static str> {
    let expires = body["expirationDateTime"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or("expirationDateTime is required.")?;
    let now = Utc::now();
    if expires <= now || expires > now + MAX_LIFETIME + chrono::Duration::minutes(1) {
        return Err("Subscription expiration can only be 1440 minutes in the future.");
    }
    Ok(expires)
}

pub(super) async fn create(AxumState(state): AxumState<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (notification_url, lifecycle_url) = {
        let mut s = lock(&state);
        if let Err(refused) = before(&mut s, &headers, None, "-") {
            return *refused;
        }
        let resource = body["resource"].as_str().unwrap_or_default();
        let parts: Vec<&str> = resource.trim_start_matches('/').split('/').collect();
        let known = match parts.as_slice() {
            ["solutions", "virtualEvents", collection, id, "registrations"] => {
                event(&s.people, collection, id).is_some()
            }
            _ => false,
        };
        if !known {
            return error(404, "ResourceNotFound", "The subscription resource was not found.");
        }
        if let Err(why) = expiry(&body) {
            return error(400, "ValidationError", why);
        }
        if s.people.subscriptions.iter().any(|x| x.resource == resource) {
            log(&mut s, "POST subscription", StatusCode::CONFLICT, false);
            return error(409, "ExtensionError", "A subscription for this resource already exists for this app.");
        }
        let urls = (body["notificationUrl"].as_str(), body["lifecycleNotificationUrl"].as_str());
        match urls {
            (Some(n), Some(l)) if n.starts_with("http") && l.starts_with("http") => (n.to_owned(), l.to_owned()),
            _ => return error(400, "ValidationError", "notificationUrl and lifecycleNotificationUrl are required."),
        }
    };
    // Both endpoints prove they are regsync's, without the lock held.
    let token = format!("validation-{}", uuid::Uuid::new_v4());
    if !validated(&notification_url, &token).await || !validated(&lifecycle_url, &token).await {
        let mut s = lock(&state);
        log(&mut s, "POST subscription", StatusCode::BAD_REQUEST, false);
        return error(
            400,
            "ValidationError",
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        );
    }
    let mut s = lock(&state);
    let n = s.people.next_id();
    let subscription = SimSubscription {
        id: format!("sub-{n:06}"),
        resource: body["resource"].as_str().unwrap_or_default().to_owned(),
        notification_url,
        lifecycle_url,
        client_state: body["clientState"].as_str().unwrap_or_default().to_owned(),
        expires: expiry(&body).unwrap_or_else(|_| Utc::now()),
    };
    let answer = (StatusCode::CREATED, Json(to_graph(&subscription))).into_response();
    s.people.subscriptions.push(subscription);
    log(&mut s, "POST subscription", StatusCode::CREATED, true);
    answer
}

pub(super) async fn list(AxumState(state): AxumState<Shared>, headers: HeaderMap) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let all: Vec<Value> = s.people.subscriptions.iter().map(to_graph).collect();
    log(&mut s, "GET subscriptions", StatusCode::OK, false);
    Json(json!({"value": all})).into_response()
}

pub(super) async fn renew(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let expires = match expiry(&body) {
        Ok(expires) => expires,
        Err(why) => return error(400, "ValidationError", why),
    };
    let answer = match s.people.subscriptions.iter_mut().find(|x| x.id == id) {
        Some(found) => {
            found.expires = expires;
            Json(to_graph(found)).into_response()
        }
        None => error(404, "ResourceNotFound", "The object was not found."),
    };
    log(&mut s, "PATCH subscription", answer.status(), answer.status().is_success());
    answer
}

pub(super) async fn remove(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut s = lock(&state);
    if let Err(refused) = before(&mut s, &headers, None, "-") {
        return *refused;
    }
    let before_len = s.people.subscriptions.len();
    s.people.subscriptions.retain(|x| x.id != id);
    let answer = if s.people.subscriptions.len() < before_len {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(404, "ResourceNotFound", "The object was not found.")
    };
    log(&mut s, "DELETE subscription", answer.status(), answer.status().is_success());
    answer
}

impl Sim {
    /// The subscriptions Graph holds.
    pub fn subscriptions(&self) -> Vec<SimSubscription> {
        self.lock().people.subscriptions.clone()
    }

    /// The notifications sent so far, in the order answered.
    pub fn notifications_sent(&self) -> Vec<SentNotification> {
        self.lock().people.notifications.clone()
    }

    /// From now on changes made in Teams are not announced (`true`), as
    /// when deliveries fail for long: a `missed` lifecycle event follows.
    pub fn lose_notifications(&self, lose: bool) {
        self.lock().people.lose_notifications = lose;
    }

    /// Announces a change to registration `registration` of event `event`
    /// to its subscription, if there is one (on a task of its own).
    pub(crate) fn announce_registration_change(&self, event_id: &str, registration: &str) {
        let s = self.lock();
        if s.people.lose_notifications {
            return;
        }
        let Some(sub) = s.people.subscriptions.iter().find(|x| x.resource.split('/').nth(3) == Some(event_id)).cloned()
        else {
            return;
        };
        drop(s);
        let item = json!({"subscriptionId": sub.id, "clientState": sub.client_state, "changeType": "updated",
            "resource": format!("{}/{registration}", sub.resource), "tenantId": crate::TENANT,
            "subscriptionExpirationDateTime": sub.expires.to_rfc3339(),
            "resourceData": {"@odata.type": "#microsoft.graph.virtualEventRegistration", "id": registration}});
        self.post_notification(sub.notification_url.clone(), sub.id.clone(), "updated".into(), item);
    }

    /// Sends lifecycle event `what` (`missed`, `reauthorizationRequired`,
    /// `subscriptionRemoved`) for event `event_id`'s subscription; a removed
    /// one is gone from Graph. Whether there was one.
    pub fn send_lifecycle(&self, event_id: &str, what: &str) -> bool {
        let mut s = self.lock();
        let Some(sub) = s.people.subscriptions.iter().find(|x| x.resource.split('/').nth(3) == Some(event_id)).cloned()
        else {
            return false;
        };
        if what == "subscriptionRemoved" {
            s.people.subscriptions.retain(|x| x.id != sub.id);
        }
        drop(s);
        let item = json!({"subscriptionId": sub.id, "clientState": sub.client_state, "lifecycleEvent": what,
            "tenantId": crate::TENANT, "subscriptionExpirationDateTime": sub.expires.to_rfc3339()});
        self.post_notification(sub.lifecycle_url.clone(), sub.id.clone(), what.to_owned(), item);
        true
    }

    fn post_notification(&self, url: String, subscription: String, kind: String, item: Value) {
        let sim = self.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a client");
            let status = match client.post(&url).json(&json!({"value": [item]})).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            sim.lock().people.notifications.push(SentNotification { subscription, kind, status });
        });
    }
}
