//! The platform's webhook sender: every change a test makes through the
//! knobs (`upsert_meeting`, `cancel_meeting`, `upsert_registrant`) is
//! announced to a configured URL, naming the item as the contract says
//! (`{"kind", "id", "meeting_id"}`), signed with HMAC-SHA256 of
//! `"<t>.<body>"` in `Regsync-Signature: t=…,v1=…`. Deliveries go out on
//! tasks of their own, as a platform's queue sends them; each answer is
//! recorded.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::Sim;

/// Where deliveries go.
#[derive(Clone)]
pub(crate) struct Webhook {
    url: String,
    secret: Arc<Vec<u8>>,
    client: reqwest::Client,
}

/// One delivery and its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `meeting` or `registrant`.
    pub kind: String,
    /// The item's id.
    pub id: String,
    /// The HTTP status answered (0: no answer).
    pub status: u16,
}

/// `Regsync-Signature` for `body` signed at `t`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, &[t.to_string().as_bytes(), b".", body].concat());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

impl Sim {
    /// From now on every change is announced to `url`, signed with `secret`.
    pub fn send_webhooks_to(&self, url: &str, secret: &str) {
        let client = reqwest::Client::new();
        self.lock().platform.webhook = Some(Webhook { url: url.into(), secret: Arc::new(secret.into()), client });
    }

    /// The deliveries answered so far, in the order the answers came.
    pub fn webhook_deliveries(&self) -> Vec<Delivery> {
        self.lock().platform.deliveries.clone()
    }

    /// Announces `body` as the platform would, waiting for the answer.
    pub async fn deliver(&self, body: Value) -> u16 {
        let Some(webhook) = self.lock().platform.webhook.clone() else { return 0 };
        self.send(webhook, body).await
    }

    /// Announces a change to meeting `id` (or registrant `id` of meeting
    /// `meeting`) on a task of its own, if a webhook is configured.
    pub(crate) fn announce(&self, meeting: Option<&str>, id: &str) {
        let Some(webhook) = self.lock().platform.webhook.clone() else { return };
        let body = match meeting {
            None => json!({"kind": "meeting", "id": id}),
            Some(meeting) => json!({"kind": "registrant", "id": id, "meeting_id": meeting}),
        };
        let sim = self.clone();
        tokio::spawn(async move { sim.send(webhook, body).await });
    }

    async fn send(&self, webhook: Webhook, body: Value) -> u16 {
        let text = body.to_string();
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let sent = webhook
            .client
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header("regsync-signature", signature(&webhook.secret, t, text.as_bytes()))
            .body(text)
            .send()
            .await;
        let status = sent.map_or(0, |r| r.status().as_u16());
        let text = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
        self.lock().platform.deliveries.push(Delivery { kind: text("kind"), id: text("id"), status });
        status
    }
}
