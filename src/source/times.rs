//! Times in the platform's items: a modification time (incremental
//! listings' watermark) and an event's start and end.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::Selector;

/// An item's time (its modification, an event's start or end): RFC 3339
/// text, or a number of seconds (or, past the year 2286 read as seconds,
/// milliseconds) since 1970. An odd value is left out, never a reason to
/// reject.
pub(super) fn time_at(item: &Value, selector: &Selector) -> Option<DateTime<Utc>> {
    let at = match selector.select(item)? {
        Value::String(text) => parse_time(text.trim())?,
        Value::Number(n) => {
            let n = n.as_i64()?;
            match n.unsigned_abs() < 10_000_000_000 {
                true => DateTime::from_timestamp(n, 0)?,
                false => DateTime::from_timestamp_millis(n)?,
            }
        }
        _ => return None,
    };
    (1..=9999).contains(&chrono::Datelike::year(&at)).then_some(at)
}

/// RFC 3339, or a date and time without a zone (taken as UTC), in the
/// years 1 to 9999: a remote date beyond what PostgreSQL stores would fail
/// the whole listing's write.
pub(crate) fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    let parsed = match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
            .map(|t| t.and_utc()),
    };
    parsed.filter(|t| (1..=9999).contains(&chrono::Datelike::year(t)))
}
