//! How a platform shapes its list, compiled from `[source]` once: where the
//! items and the paging hints are, where each field sits (a JSON pointer or
//! a JSONPath), and what the platform's status words mean.

use crate::config::{Paging, SourceSettings};
use crate::domain::{AllowedRegistrant, Desired, EventKind, Selector};

use super::Error;

/// What a platform status value means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Synced as the platform says.
    Meeting(Desired),
    /// Neither synced nor rejected, and never "missing".
    Ignore,
}

/// Where each field of an item sits.
#[derive(Debug, Clone)]
pub struct Fields {
    /// The platform's id.
    pub id: Selector,
    /// The organizer's Entra object id.
    pub organizer_id: Selector,
    /// Graph's online meeting id.
    pub online_meeting_id: Selector,
    /// The organizer's UPN, resolved through Graph (wins over `organizer_id`).
    pub organizer_upn: Option<Selector>,
    /// The Teams join link, resolved through Graph (wins over `online_meeting_id`).
    pub join_url: Option<Selector>,
    /// Who may register.
    pub allowed_registrant: Selector,
    /// The platform's status word.
    pub status: Selector,
    /// When the platform last changed the item.
    pub updated_at: Selector,
    /// When the event starts.
    pub starts_at: Selector,
    /// When the event ends.
    pub ends_at: Selector,
    /// The webinar or town hall the meeting is (a v1.0 target), instead of
    /// the organizer and online meeting: its field's name, and where it is.
    pub event_id: Option<(&'static str, Selector)>,
}

/// Where things are in a page, and the rules for its items.
#[derive(Debug, Clone)]
pub struct PageShape {
    /// Pointer to the items array (`""`: the page is the array).
    pub items_pointer: String,
    /// How the list is paged.
    pub paging: Paging,
    /// Pointer to the next cursor (`""`: no cursor).
    pub cursor_pointer: String,
    /// Pointer to the next page's URL.
    pub next_url_pointer: String,
    /// Pointer to "more pages follow".
    pub has_more_pointer: String,
    /// Pointer to the listing's total number of items.
    pub total_pointer: String,
    /// Pointer to "this result is complete".
    pub complete_pointer: String,
    /// Where each field sits.
    pub fields: Fields,
    /// Status words, lower-cased, and what they mean.
    statuses: Vec<(String, Status)>,
    /// Audience for items that name none.
    pub default_allowed_registrant: AllowedRegistrant,
    /// Items larger than this (serialized) are rejected.
    pub max_item_bytes: usize,
}

impl PageShape {
    /// Compiles the shape `settings` describe; `events`: each meeting is a
    /// webinar or a town hall (a v1.0 `graph.target`).
    ///
    /// # Errors
    /// A field selector or a status mapping is invalid (validation names
    /// the key first; this is the last line of defence).
    pub fn new(
        settings: &SourceSettings,
        default_allowed_registrant: AllowedRegistrant,
        events: Option<EventKind>,
    ) -> Result<Self, Error> {
        let f = &settings.fields;
        let select = |key: &str, text: &str| Selector::parse(text).map_err(|e| Error::Setup(format!("{key}: {e}")));
        let fields = Fields {
            id: select("source.fields.id", &f.id)?,
            organizer_id: select("source.fields.organizer_id", &f.organizer_id)?,
            online_meeting_id: select("source.fields.online_meeting_id", &f.online_meeting_id)?,
            organizer_upn: optional(select("source.fields.organizer_upn", &f.organizer_upn)?),
            join_url: optional(select("source.fields.join_url", &f.join_url)?),
            allowed_registrant: select("source.fields.allowed_registrant", &f.allowed_registrant)?,
            status: select("source.fields.status", &f.status)?,
            updated_at: select("source.fields.updated_at", &f.updated_at)?,
            starts_at: select("source.fields.starts_at", &f.starts_at)?,
            ends_at: select("source.fields.ends_at", &f.ends_at)?,
            event_id: match events {
                None => None,
                Some(EventKind::Webinar) => Some(("webinar_id", select("source.fields.webinar_id", &f.webinar_id)?)),
                Some(EventKind::Townhall) => {
                    Some(("townhall_id", select("source.fields.townhall_id", &f.townhall_id)?))
                }
            },
        };
        // The platform's own words first: they may redefine the built-ins.
        let mut statuses = Vec::new();
        for (word, meaning) in &settings.status_map {
            let status = match meaning.as_str() {
                "active" => Status::Meeting(Desired::Registered),
                "cancelled" => Status::Meeting(Desired::Unregistered),
                "ignore" => Status::Ignore,
                other => return Err(Error::Setup(format!("source.status_map.{word} is {other:?}"))),
            };
            statuses.push((word.trim().to_lowercase(), status));
        }
        for (word, desired) in
            [("active", Desired::Registered), ("cancelled", Desired::Unregistered), ("canceled", Desired::Unregistered)]
        {
            statuses.push((word.into(), Status::Meeting(desired)));
        }
        Ok(Self {
            items_pointer: settings.items_pointer.clone(),
            paging: settings.paging,
            cursor_pointer: settings.cursor_pointer.clone(),
            next_url_pointer: settings.next_url_pointer.clone(),
            has_more_pointer: settings.has_more_pointer.clone(),
            total_pointer: settings.total_pointer.clone(),
            complete_pointer: settings.complete_pointer.clone(),
            fields,
            statuses,
            default_allowed_registrant,
            max_item_bytes: settings.max_item_bytes,
        })
    }

    /// What the platform's status `word` means (case and surrounding space
    /// ignored); `None` for a word nobody mapped.
    pub fn status(&self, word: &str) -> Option<Status> {
        let word = word.trim().to_lowercase();
        self.statuses.iter().find(|(w, _)| *w == word).map(|(_, s)| *s)
    }
}

/// A selector that is configured, or `None` for an unmapped field.
fn optional(selector: Selector) -> Option<Selector> {
    match selector {
        Selector::None => None,
        selected => Some(selected),
    }
}
