//! The platform's JSON, read through configurable JSON pointers, and the
//! per-item validation that turns each item into a meeting or a rejection.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::repair::{holds_nul, repair_strings};
use crate::config::FieldPointers;
use crate::domain::{
    AllowedRegistrant, Desired, ExternalId, ExternalMeeting, OnlineMeetingId, OrganizerId, RejectedItem,
};

use super::Error;

/// How much of a rejected item's JSON is kept for operators.
const RAW_KEEP_BYTES: usize = 2_048;
/// Ids longer than this are not ids.
const MAX_ID_CHARS: usize = 1_024;

/// Where things are in a page, and the rules for its items.
#[derive(Debug, Clone)]
pub struct PageShape {
    /// Pointer to the items array.
    pub items_pointer: String,
    /// Pointer to the next cursor.
    pub cursor_pointer: String,
    /// Pointers to the fields of an item.
    pub fields: FieldPointers,
    /// Audience for items that name none.
    pub default_allowed_registrant: AllowedRegistrant,
    /// Items larger than this (serialized) are rejected.
    pub max_item_bytes: usize,
}

/// One page, validated item by item.
#[derive(Debug, Default)]
pub struct Page {
    /// Items that passed validation, in page order.
    pub meetings: Vec<ExternalMeeting>,
    /// Items that did not, with reasons.
    pub rejected: Vec<RejectedItem>,
    /// The cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Parses one page body.
///
/// # Errors
/// The body is not JSON, or has no items array where `items_pointer` says.
pub fn parse_page(body: &[u8], shape: &PageShape) -> Result<Page, Error> {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(doc) => doc,
        // A fault inside one string must cost that item only, not the page.
        Err(strict) => serde_json::from_slice(&repair_strings(body)).map_err(|_| Error::DecodePage(strict))?,
    };
    let items = match doc.pointer(&shape.items_pointer) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => {
            return Err(Error::PageShape(format!("no items array at JSON pointer {:?}", shape.items_pointer)))
        }
        Some(other) => {
            return Err(Error::PageShape(format!(
                "{:?} is {}, expected an array",
                shape.items_pointer,
                type_name(other)
            )))
        }
    };
    let next_cursor = match doc.pointer(&shape.cursor_pointer) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(Error::PageShape(format!(
                "cursor at {:?} is {}, expected a string or null",
                shape.cursor_pointer,
                type_name(other)
            )))
        }
    };
    let mut page = Page { next_cursor, ..Page::default() };
    for item in items {
        match parse_item(item, shape) {
            Ok(meeting) => page.meetings.push(meeting),
            Err(rejected) => page.rejected.push(rejected),
        }
    }
    Ok(page)
}

fn parse_item(item: &Value, shape: &PageShape) -> Result<ExternalMeeting, RejectedItem> {
    let raw = serde_json::to_string(item).unwrap_or_default();
    // "evt-7" and "evt-7 " are one meeting.
    let id = text_field(item, "id", &shape.fields.id, true).map(|id| id.map(|id| id.trim().to_owned()));
    let reject = |reason: String| RejectedItem {
        external_id: id.as_ref().ok().cloned().flatten(),
        reason,
        raw: truncate(&raw, RAW_KEEP_BYTES),
    };
    if !item.is_object() {
        return Err(reject(format!("item is {}, expected an object", type_name(item))));
    }
    if raw.len() > shape.max_item_bytes {
        return Err(reject(format!(
            "item is {} bytes, more than source.max_item_bytes ({})",
            raw.len(),
            shape.max_item_bytes
        )));
    }
    let external_id = id.clone().map_err(&reject)?.ok_or_else(|| reject(missing("id", &shape.fields.id)))?;
    let organizer_id = graph_id(item, "organizer_id", &shape.fields.organizer_id).map_err(&reject)?;
    let online_meeting_id = graph_id(item, "online_meeting_id", &shape.fields.online_meeting_id).map_err(&reject)?;
    let allowed_registrant =
        match text_field(item, "allowed_registrant", &shape.fields.allowed_registrant, false).map_err(&reject)? {
            None => shape.default_allowed_registrant,
            Some(value) => AllowedRegistrant::parse(&value).ok_or_else(|| {
                reject(format!("allowed_registrant is {value:?}; expected \"everyone\" or \"organization\""))
            })?,
        };
    let desired = match text_field(item, "status", &shape.fields.status, false).map_err(&reject)? {
        None => Desired::Registered,
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "active" => Desired::Registered,
            "cancelled" | "canceled" => Desired::Unregistered,
            _ => return Err(reject(format!("status is {value:?}; expected \"active\" or \"cancelled\""))),
        },
    };
    // Informational only: an odd format is kept out, never a reason to reject.
    let updated_at = text_field(item, "updated_at", &shape.fields.updated_at, false)
        .ok()
        .flatten()
        .and_then(|value| parse_time(value.trim()));
    // Fields regsync reads name their own fault above; this catches the rest.
    if holds_nul(item) {
        return Err(reject(
            "item holds a NUL character or an unpaired UTF-16 surrogate, which regsync cannot store".into(),
        ));
    }
    Ok(ExternalMeeting {
        external_id: ExternalId(external_id),
        organizer_id: OrganizerId(organizer_id),
        online_meeting_id: OnlineMeetingId(online_meeting_id),
        allowed_registrant,
        desired,
        updated_at,
    })
}

/// RFC 3339, or a date and time without a zone (taken as UTC).
fn parse_time(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| chrono::NaiveDateTime::parse_from_str(value, format).ok())
        .map(|t| t.and_utc())
}

/// Reads a text field; `Ok(None)` when absent or null. The platform's `id`
/// may also be an integer, which many platforms use.
fn text_field(item: &Value, name: &str, pointer: &str, integer_ok: bool) -> Result<Option<String>, String> {
    if pointer.is_empty() {
        return Ok(None);
    }
    match item.pointer(pointer) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(format!("{name} (at {pointer}) is empty")),
        Some(Value::String(s)) if s.chars().count() > MAX_ID_CHARS => {
            Err(format!("{name} (at {pointer}) is longer than {MAX_ID_CHARS} characters"))
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            Err(format!("{name} (at {pointer}) contains control characters"))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) if integer_ok && (n.is_u64() || n.is_i64()) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{name} (at {pointer}) is {}, expected a string", type_name(other))),
    }
}

/// A required id that goes into a Graph URL path. Percent-encoding keeps any
/// character from changing the path, except the dot segments, which URL
/// normalisation would resolve: those and whitespace are never Graph ids.
fn graph_id(item: &Value, name: &str, pointer: &str) -> Result<String, String> {
    let value = text_field(item, name, pointer, false)?.ok_or_else(|| missing(name, pointer))?;
    if value == "." || value == ".." {
        return Err(format!("{name} is {value:?}, which is not an id and would change the Graph URL path"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("{name} {value:?} contains whitespace; Graph ids never do"));
    }
    Ok(value)
}

fn missing(name: &str, pointer: &str) -> String {
    format!("{name} (at {pointer}) is missing")
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape() -> PageShape {
        PageShape {
            items_pointer: "/meetings".into(),
            cursor_pointer: "/next_cursor".into(),
            fields: FieldPointers::default(),
            default_allowed_registrant: AllowedRegistrant::Everyone,
            max_item_bytes: 4_096,
        }
    }

    fn page(items: Value) -> Page {
        let body = json!({ "meetings": items, "next_cursor": "c2" }).to_string();
        parse_page(body.as_bytes(), &shape()).expect("page parses")
    }

    fn reason_for(item: Value) -> String {
        let page = page(json!([item]));
        assert!(page.meetings.is_empty(), "item was accepted");
        page.rejected[0].reason.clone()
    }

    fn good() -> Value {
        json!({"id": "evt-1", "organizer_id": "org-1", "online_meeting_id": "MSp1", "status": "active"})
    }

    #[test]
    fn a_valid_item_becomes_a_meeting_with_defaults() {
        let page = page(json!([good()]));
        assert_eq!(page.next_cursor.as_deref(), Some("c2"));
        let m = &page.meetings[0];
        assert_eq!(m.external_id.as_str(), "evt-1");
        assert_eq!(m.allowed_registrant, AllowedRegistrant::Everyone);
        assert_eq!(m.desired, Desired::Registered);
    }

    #[test]
    fn cancelled_items_want_no_registration() {
        let mut item = good();
        item["status"] = json!("Cancelled");
        assert_eq!(page(json!([item])).meetings[0].desired, Desired::Unregistered);
    }

    #[test]
    fn each_bad_field_has_its_own_reason() {
        let cases = [
            (json!({"organizer_id": "o", "online_meeting_id": "m"}), "id (at /id) is missing"),
            (json!({"id": " ", "organizer_id": "o", "online_meeting_id": "m"}), "id (at /id) is empty"),
            (json!({"id": true, "organizer_id": "o", "online_meeting_id": "m"}), "id (at /id) is a boolean"),
            (json!({"id": "e", "online_meeting_id": "m"}), "organizer_id (at /organizer_id) is missing"),
            (
                json!({"id": "e", "organizer_id": 5, "online_meeting_id": "m"}),
                "organizer_id (at /organizer_id) is a number",
            ),
            (json!({"id": "e", "organizer_id": "o"}), "online_meeting_id (at /online_meeting_id) is missing"),
            (json!({"id": "e", "organizer_id": "..", "online_meeting_id": "m"}), "would change the Graph URL path"),
            (json!({"id": "e", "organizer_id": "o", "online_meeting_id": "a b"}), "contains whitespace"),
            (
                json!({"id": "e", "organizer_id": "o", "online_meeting_id": "m", "allowed_registrant": "public"}),
                "allowed_registrant is \"public\"",
            ),
            (
                json!({"id": "e", "organizer_id": "o", "online_meeting_id": "m", "status": "deleted"}),
                "status is \"deleted\"",
            ),
            (json!("just a string"), "item is a string, expected an object"),
        ];
        for (item, expected) in cases {
            let reason = reason_for(item.clone());
            assert!(reason.contains(expected), "{item}: {reason:?} lacks {expected:?}");
        }
    }

    #[test]
    fn faults_inside_strings_cost_their_item_only() {
        let body = "{\"meetings\": [{\"id\": \"a\", \"t\": \"\\ud800\"}, {\"id\": \"b\", \"t\": \"x\u{0}\"}, \
                    {\"id\": \"c\", \"organizer_id\": \"o\", \"online_meeting_id\": \"m\", \"t\": \"\\ud83d\\ude00\\n\"}]}";
        let page = parse_page(body.as_bytes(), &shape()).expect("the page parses");
        let rejected: Vec<_> = page.rejected.iter().map(|r| r.external_id.as_deref().unwrap_or_default()).collect();
        assert_eq!(rejected, ["a", "b"]);
        assert_eq!(page.meetings[0].external_id.as_str(), "c");
    }

    #[test]
    fn an_odd_updated_at_is_read_when_it_can_be_and_never_rejects() {
        let mut item = good();
        item["updated_at"] = json!("2026-11-28 10:00:00");
        assert!(page(json!([item.clone()])).meetings[0].updated_at.is_some());
        item["updated_at"] = json!("yesterday");
        assert_eq!(page(json!([item])).meetings[0].updated_at, None);
    }

    #[test]
    fn a_rejected_item_keeps_its_id_for_operators() {
        let page = page(json!([{"id": "evt-9", "organizer_id": "o"}]));
        assert_eq!(page.rejected[0].external_id.as_deref(), Some("evt-9"));
    }

    #[test]
    fn integer_ids_and_odd_characters_in_ids_are_accepted() {
        let item = json!({"id": 42, "organizer_id": "o/../x", "online_meeting_id": "MSp?#%é"});
        let page = page(json!([item]));
        assert_eq!(page.meetings[0].external_id.as_str(), "42");
        assert_eq!(page.meetings[0].online_meeting_id.as_str(), "MSp?#%é");
    }

    #[test]
    fn an_oversized_item_is_rejected_and_its_raw_text_truncated() {
        let mut item = good();
        item["notes"] = json!("x".repeat(10_000));
        let page = page(json!([item, good()]));
        assert!(page.rejected[0].reason.contains("bytes, more than source.max_item_bytes"));
        assert!(page.rejected[0].raw.len() <= RAW_KEEP_BYTES + 4);
        assert_eq!(page.meetings.len(), 1);
    }

    #[test]
    fn a_page_without_items_is_an_error_not_an_empty_listing() {
        let err = parse_page(br#"{"data": []}"#, &shape()).unwrap_err();
        assert!(err.to_string().contains("no items array"), "{err}");
        assert!(parse_page(b"{not json", &shape()).is_err());
    }

    #[test]
    fn custom_pointers_map_another_platforms_list() {
        let mut shape = shape();
        shape.items_pointer = "/data/items".into();
        shape.cursor_pointer = "/paging/next".into();
        shape.fields.id = "/uid".into();
        shape.fields.organizer_id = "/teams/organizer".into();
        shape.fields.online_meeting_id = "/teams/meeting".into();
        let body = json!({"data": {"items": [{"uid": "u1", "teams": {"organizer": "o", "meeting": "m"}}]}, "paging": {"next": null}});
        let page = parse_page(body.to_string().as_bytes(), &shape).unwrap();
        assert_eq!(page.meetings[0].external_id.as_str(), "u1");
        assert_eq!(page.next_cursor, None);
    }
}
