//! A meeting as the simulated platform lists it.

use super::*;

/// A meeting as the platform lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimMeeting {
    /// Platform id.
    pub id: String,
    /// Organizer's object id.
    pub organizer_id: String,
    /// Graph's online meeting id.
    pub online_meeting_id: String,
    /// `everyone` or `organization`.
    pub allowed_registrant: String,
    /// `active` or `cancelled`.
    pub status: String,
    /// RFC 3339.
    pub updated_at: String,
    /// RFC 3339: when the event starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// RFC 3339: when the event ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
}

impl SimMeeting {
    /// An active meeting open to everyone.
    pub fn new(id: &str, organizer_id: &str, online_meeting_id: &str) -> Self {
        Self {
            id: id.into(),
            organizer_id: organizer_id.into(),
            online_meeting_id: online_meeting_id.into(),
            allowed_registrant: "everyone".into(),
            status: "active".into(),
            updated_at: "2026-11-28T10:00:00Z".into(),
            starts_at: None,
            ends_at: None,
        }
    }

    /// The `i`-th generated meeting: five organizers, meeting ids shaped like
    /// Graph's base64 ids; every 7th for `organization`, every 10th cancelled.
    pub fn generated(i: usize) -> Self {
        let organizer = format!("16664f75-11dc-4870-bec6-38c1aaa8{:04x}", i % 5);
        let mut m = Self::new(&format!("evt-{i:05}"), &organizer, &format!("MSpkYzE3Njc0Yy04MWQ5LTRhZGItYmZ{i:06}"));
        if i % 7 == 0 {
            m.allowed_registrant = "organization".into();
        }
        if i % 10 == 0 {
            m.status = "cancelled".into();
        }
        m
    }
}

impl SimMeeting {
    /// The meeting as a platform that holds no Graph ids lists it: the
    /// organizer's e-mail and the Teams join link.
    pub fn by_reference(&self) -> Value {
        json!({
            "id": self.id,
            "organizer_email": crate::upn_of(&self.organizer_id),
            "join_url": crate::join_url_of(&self.online_meeting_id),
            "allowed_registrant": self.allowed_registrant,
            "status": self.status,
            "updated_at": self.updated_at,
        })
    }
}
