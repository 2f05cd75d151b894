//! The platform's filter by modification time (`?changed_since=`), as
//! Eventbrite's `changed_since` and Cvent's `lastModified` filters work: an
//! item is listed when its `updated_at` is at or after the time asked. The
//! time is RFC 3339 or a number of seconds (milliseconds past the year 2286)
//! since 1970.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{Item, Listing};

/// A `changed_since` value, or why it is not one.
pub(crate) fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let n: i64 = text.parse().map_err(|_| format!("changed_since {text:?} is not RFC 3339 or a unix time"))?;
    let at = match n.unsigned_abs() < 10_000_000_000 {
        true => DateTime::from_timestamp(n, 0),
        false => DateTime::from_timestamp_millis(n),
    };
    at.ok_or_else(|| format!("changed_since {text:?} is out of range"))
}

/// Whether `updated_at` (RFC 3339) is at or after `since`; an item without
/// a readable time is not listed by a filtered request.
pub(crate) fn changed_since(updated_at: Option<&str>, since: DateTime<Utc>) -> bool {
    updated_at.and_then(|t| DateTime::parse_from_rfc3339(t).ok()).is_some_and(|t| t >= since)
}

/// Now, as the platform stamps a change.
pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Listing {
    /// The positions of the items changed at or after `since`: worked out
    /// once per `since` and list version, so the pages of one filtered
    /// listing of a million items do not each read them all.
    pub(super) fn positions_since(&mut self, since: DateTime<Utc>) -> std::sync::Arc<Vec<usize>> {
        if let Some((at, version, positions)) = &self.since_cache {
            if *at == since && *version == self.version {
                return positions.clone();
            }
        }
        let changed = |item: &Item| match item {
            Item::Meeting(m) => changed_since(Some(&m.updated_at), since),
            Item::Raw(v) => changed_since(v.get("updated_at").and_then(Value::as_str), since),
            Item::Text(_) => false,
        };
        let positions: std::sync::Arc<Vec<usize>> = std::sync::Arc::new(
            self.items.iter().enumerate().filter(|(_, item)| changed(item)).map(|(i, _)| i).collect(),
        );
        self.since_cache = Some((since, self.version, positions.clone()));
        positions
    }

    /// Every `every`-th meeting changed now (its `updated_at`), as a busy
    /// platform changes a share of its events between polls. Returns how
    /// many.
    pub(crate) fn touch(&mut self, every: usize) -> usize {
        let now = now();
        let mut touched = 0;
        for item in self.items.iter_mut().step_by(every.max(1)) {
            if let Item::Meeting(m) = item {
                m.updated_at = now.clone();
                touched += 1;
            }
        }
        self.version += 1;
        touched
    }
}

/// `POST /_sim/meetings/touch?every=N`: every N-th meeting changed now.
pub(super) async fn touch(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<std::sync::Mutex<crate::State>>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, usize>>,
) -> axum::Json<serde_json::Value> {
    let every = q.get("every").copied().unwrap_or(100);
    let touched = state.lock().unwrap_or_else(|p| p.into_inner()).platform.touch(every);
    axum::Json(serde_json::json!({ "touched": touched }))
}
