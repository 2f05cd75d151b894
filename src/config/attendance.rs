//! `[attendance]`: who attended each event and for how long, read from
//! Teams' attendance reports after the event ends and written back to the
//! platform per registrant.

use std::time::Duration;

use serde::Deserialize;

use super::WritebackSettings;

/// `[attendance]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttendanceSettings {
    /// Read attendance after each event ends and write it back.
    pub enabled: bool,
    /// Wait this long after an event's end (`source.fields.ends_at`)
    /// before the first read: reports are ready about 10 minutes after a
    /// webinar ends, hours after an ordinary meeting.
    pub delay_secs: u64,
    /// Stop looking for (and re-reading) a report this long after the end.
    pub give_up_after_secs: u64,
    /// The shortest wait before an event's reports are read again (no
    /// report yet, or a report that may still change).
    pub reread_secs: u64,
    /// The call that writes one registrant's attendance back.
    pub writeback: AttendanceWriteback,
}

impl Default for AttendanceSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            delay_secs: 600,
            give_up_after_secs: 86_400,
            reread_secs: 300,
            writeback: AttendanceWriteback::default(),
        }
    }
}

impl AttendanceSettings {
    /// The wait after an event's end.
    pub fn delay(&self) -> Duration {
        Duration::from_secs(self.delay_secs)
    }

    /// The shortest wait before an event is read again.
    pub fn reread(&self) -> Duration {
        Duration::from_secs(self.reread_secs.max(1))
    }

    /// How long after the end reports are looked for.
    pub fn give_up_after(&self) -> Duration {
        Duration::from_secs(self.give_up_after_secs)
    }
}

/// `[attendance.writeback]`: as `[writeback]`; the body's placeholders are
/// `{meeting_id}`, `{registrant_id}`, `{email}`, `{attended}` (true/false),
/// `{total_seconds}`, `{first_join}`, `{last_leave}` (RFC 3339, empty when
/// they did not attend).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AttendanceWriteback {
    /// HTTP method (PUT or PATCH: a write-back may be sent again).
    pub method: String,
    /// An absolute URL, or a path below `source.base_url`; `{meeting_id}`
    /// and `{registrant_id}` are replaced (percent-encoded). Empty: the
    /// attendance is read and shown in `ops.attendance`, not written back.
    pub url: String,
    /// The JSON body template.
    pub body: String,
}

impl Default for AttendanceWriteback {
    fn default() -> Self {
        Self {
            method: "PUT".into(),
            url: String::new(),
            body: r#"{"attended": {attended}, "seconds": {total_seconds}}"#.into(),
        }
    }
}

impl AttendanceWriteback {
    /// As a write-back of the platform client.
    pub fn to_writeback(&self) -> WritebackSettings {
        WritebackSettings {
            method: self.method.clone(),
            url: self.url.clone(),
            body: self.body.clone(),
            ..WritebackSettings::default()
        }
    }
}
