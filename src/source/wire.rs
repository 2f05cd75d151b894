//! The platform's JSON, read through configurable JSON pointers, and the
//! per-item validation that turns each item into a meeting or a rejection.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use super::repair::{holds_nul, repair_strings};
use super::shape::{PageShape, Status};
use crate::config::Paging;
use crate::domain::{
    AllowedRegistrant, Desired, EventTimes, ExternalId, ExternalMeeting, MeetingRef, OnlineMeetingId, OrganizerId,
    OrganizerRef, RejectedItem, Selector,
};

use super::times::time_at;
use super::Error;

/// How much of a rejected item's JSON is kept for operators.
pub(super) const RAW_KEEP_BYTES: usize = 2_048;
/// Ids longer than this are not ids.
const MAX_ID_CHARS: usize = 1_024;

/// One page, validated item by item, with what it says about the pages
/// after it: of meetings, or of registrants (`T`).
#[derive(Debug)]
pub struct Page<T = ExternalMeeting> {
    /// Items that passed validation, in page order.
    pub accepted: Vec<T>,
    /// Items that did not, with reasons.
    pub rejected: Vec<RejectedItem>,
    /// Ids of items whose status the platform maps to `ignore`.
    pub ignored: Vec<String>,
    /// Items on the page, whatever became of them.
    pub items: usize,
    /// The cursor of the next page; `None` on the last page.
    pub next_cursor: Option<String>,
    /// The next page's URL (`next_url` at its pointer, `link_header` from the
    /// response), as the platform wrote it.
    pub next_url: Option<String>,
    /// The platform says whether more pages follow.
    pub has_more: Option<bool>,
    /// The platform says how many items the listing holds.
    pub total: Option<u64>,
    /// The platform says whether the result is complete.
    pub complete: Option<bool>,
}

impl<T> Default for Page<T> {
    fn default() -> Self {
        Self {
            accepted: Vec::new(),
            rejected: Vec::new(),
            ignored: Vec::new(),
            items: 0,
            next_cursor: None,
            next_url: None,
            has_more: None,
            total: None,
            complete: None,
        }
    }
}

/// Parses one page body of meetings.
///
/// # Errors
/// The body is not JSON, or has no items array where `items_pointer` says.
pub fn parse_page(body: &[u8], shape: &PageShape) -> Result<Page, Error> {
    parse_items(body, shape, &shape.items_pointer, |item| parse_item(item, shape))
}

/// Parses one page body whose items `parse` reads, at `items_pointer`, with
/// the paging hints where `shape` says.
///
/// # Errors
/// The body is not JSON, or has no items array where `items_pointer` says.
pub fn parse_items<T>(
    body: &[u8],
    shape: &PageShape,
    items_pointer: &str,
    parse: impl Fn(&Value) -> Result<Parsed<T>, RejectedItem>,
) -> Result<Page<T>, Error> {
    let doc = decode(body)?;
    let items = match doc.pointer(items_pointer) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => {
            return Err(Error::PageShape(format!("no items array at JSON pointer {items_pointer:?}")))
        }
        Some(other) => {
            return Err(Error::PageShape(format!("{items_pointer:?} is {}, expected an array", type_name(other))))
        }
    };
    let mut page = Page {
        items: items.len(),
        next_cursor: hint_text(&doc, &shape.cursor_pointer, "cursor")?,
        next_url: match shape.paging {
            Paging::NextUrl => hint_text(&doc, &shape.next_url_pointer, "next page URL")?,
            _ => None,
        },
        has_more: hint_bool(&doc, &shape.has_more_pointer, "has_more")?,
        total: match hint(&doc, &shape.total_pointer) {
            None => None,
            Some(Value::Number(n)) if n.is_u64() => n.as_u64(),
            // A whole number written as a float (`1e3`, `1e300`): taken,
            // capped at the largest count.
            Some(Value::Number(n)) if n.as_f64().is_some_and(|f| f.is_finite() && f >= 0.0 && f.fract() == 0.0) => {
                n.as_f64().map(|f| f as u64)
            }
            Some(other) => {
                return Err(Error::PageShape(format!(
                    "total at {:?} is {}, expected a whole number",
                    shape.total_pointer,
                    type_name(other)
                )))
            }
        },
        complete: hint_bool(&doc, &shape.complete_pointer, "complete")?,
        ..Page::default()
    };
    items.iter().for_each(|item| page.take(parse(item)));
    Ok(page)
}

impl<T> Page<T> {
    /// One item outside a listing (pushed, or fetched alone), validated as
    /// a listed one: a page of one.
    pub fn of_one(item: &Value, parse: impl Fn(&Value) -> Result<Parsed<T>, RejectedItem>) -> Self {
        let mut page = Page { items: 1, ..Page::default() };
        page.take(parse(item));
        page
    }

    fn take(&mut self, parsed: Result<Parsed<T>, RejectedItem>) {
        match parsed {
            Ok(Parsed::Accepted(accepted)) => self.accepted.push(accepted),
            Ok(Parsed::Ignored(id)) => self.ignored.extend(id),
            Err(rejected) => self.rejected.push(rejected),
        }
    }
}

/// A body that should be JSON, read as the pages are: a fault inside one
/// string costs that string, not the document.
pub(super) fn decode(body: &[u8]) -> Result<Value, Error> {
    match serde_json::from_slice(body) {
        Ok(doc) => Ok(doc),
        Err(strict) => serde_json::from_slice(&repair_strings(body)).map_err(|_| Error::DecodePage(strict)),
    }
}

/// A paging hint at `pointer`: `None` when the pointer is empty (not
/// configured) or the value absent or null.
fn hint<'v>(doc: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.is_empty() {
        return None;
    }
    doc.pointer(pointer).filter(|v| !v.is_null())
}

fn hint_text(doc: &Value, pointer: &str, what: &str) -> Result<Option<String>, Error> {
    match hint(doc, pointer) {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => {
            Err(Error::PageShape(format!("{what} at {pointer:?} is {}, expected a string or null", type_name(other))))
        }
    }
}

fn hint_bool(doc: &Value, pointer: &str, what: &str) -> Result<Option<bool>, Error> {
    match hint(doc, pointer) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            Err(Error::PageShape(format!("{what} at {pointer:?} is {}, expected a boolean", type_name(other))))
        }
    }
}

/// What one item became.
pub enum Parsed<T> {
    /// A valid item.
    Accepted(T),
    /// Its status is mapped to `ignore`; its id, if it had one.
    Ignored(Option<String>),
}

pub(super) fn parse_item(item: &Value, shape: &PageShape) -> Result<Parsed<ExternalMeeting>, RejectedItem> {
    let raw = serde_json::to_string(item).unwrap_or_default();
    let id = platform_id(item, "id", &shape.fields.id);
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
    let (organizer, online_meeting) = match &shape.fields.event_id {
        // A webinar or town hall is the meeting: its id stands where the
        // online meeting's does, and the organizer is optional.
        Some((field, selector)) => {
            let organizer = text_field(item, "organizer_id", &shape.fields.organizer_id, false).map_err(&reject)?;
            (
                OrganizerRef::Id(OrganizerId(organizer.unwrap_or_default())),
                MeetingRef::Id(OnlineMeetingId(graph_id(item, field, selector).map_err(&reject)?)),
            )
        }
        None => (
            match &shape.fields.organizer_upn {
                Some(selector) => OrganizerRef::Upn(upn(item, selector).map_err(&reject)?),
                None => OrganizerRef::Id(OrganizerId(
                    graph_id(item, "organizer_id", &shape.fields.organizer_id).map_err(&reject)?,
                )),
            },
            match &shape.fields.join_url {
                Some(selector) => MeetingRef::JoinUrl(join_url(item, selector).map_err(&reject)?),
                None => MeetingRef::Id(OnlineMeetingId(
                    graph_id(item, "online_meeting_id", &shape.fields.online_meeting_id).map_err(&reject)?,
                )),
            },
        ),
    };
    let allowed_registrant =
        match text_field(item, "allowed_registrant", &shape.fields.allowed_registrant, false).map_err(&reject)? {
            None => shape.default_allowed_registrant,
            Some(value) => AllowedRegistrant::parse(&value).ok_or_else(|| {
                reject(format!("allowed_registrant is {value:?}; expected \"everyone\" or \"organization\""))
            })?,
        };
    let desired = match status_word(item, &shape.fields.status).map_err(&reject)? {
        None => Desired::Registered,
        Some(word) => match shape.status(&word) {
            Some(Status::Meeting(desired)) => desired,
            Some(Status::Ignore) => return Ok(Parsed::Ignored(Some(external_id))),
            None => {
                return Err(reject(format!(
                    "status is {word:?}, which is not \"active\" or \"cancelled\": map it with source.status_map.{word}"
                )))
            }
        },
    };
    let updated_at = time_at(item, &shape.fields.updated_at);
    let times =
        EventTimes { starts_at: time_at(item, &shape.fields.starts_at), ends_at: time_at(item, &shape.fields.ends_at) };
    // Fields regsync reads name their own fault above; this catches the rest.
    if holds_nul(item) {
        return Err(reject(
            "item holds a NUL character or an unpaired UTF-16 surrogate, which regsync cannot store".into(),
        ));
    }
    Ok(Parsed::Accepted(ExternalMeeting {
        external_id: ExternalId(external_id),
        organizer,
        online_meeting,
        allowed_registrant,
        desired,
        updated_at,
        times,
    }))
}

/// The status field: a string, or a boolean read as `true`/`false`.
pub(super) fn status_word(item: &Value, selector: &Selector) -> Result<Option<String>, String> {
    match selector.select(item) {
        Some(Value::Bool(b)) => Ok(Some(b.to_string())),
        _ => text_field(item, "status", selector, false),
    }
}

/// Reads a text field; `Ok(None)` when absent or null. The platform's `id`
/// may also be an integer, which many platforms use.
pub(super) fn text_field(
    item: &Value,
    name: &str,
    pointer: &Selector,
    integer_ok: bool,
) -> Result<Option<String>, String> {
    match pointer.select(item) {
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

/// A platform id (a meeting's, a registrant's), trimmed: "evt-7" and
/// "evt-7 " are one. A dot segment is never an id: put into a URL path it
/// changes the path, even percent-encoded (URL parsers read `%2E%2E` as
/// `..`).
pub(super) fn platform_id(item: &Value, name: &str, pointer: &Selector) -> Result<Option<String>, String> {
    let id = text_field(item, name, pointer, true)?.map(|id| id.trim().to_owned());
    match id.as_deref() {
        Some(dots @ ("." | "..")) => {
            Err(format!("{name} is {dots:?}, which is not an id and would change the URL paths it is put in"))
        }
        _ => Ok(id),
    }
}

/// `value` as one percent-encoded URL path segment; `None` for a dot
/// segment, which no encoding keeps from changing the path.
pub fn path_segment(value: &str) -> Option<String> {
    (!matches!(value, "" | "." | "..")).then(|| utf8_percent_encode(value, NON_ALPHANUMERIC).to_string())
}

/// A required id that goes into a Graph URL path. Percent-encoding keeps any
/// character from changing the path, except the dot segments, which URL
/// normalisation would resolve: those and whitespace are never Graph ids.
fn graph_id(item: &Value, name: &str, pointer: &Selector) -> Result<String, String> {
    let value = text_field(item, name, pointer, false)?.ok_or_else(|| missing(name, pointer))?;
    if value == "." || value == ".." {
        return Err(format!("{name} is {value:?}, which is not an id and would change the Graph URL path"));
    }
    if value.chars().any(char::is_whitespace) {
        return Err(format!("{name} {value:?} contains whitespace; Graph ids never do"));
    }
    Ok(value)
}

/// The organizer's UPN (or e-mail): `name@domain`, compared without case.
fn upn(item: &Value, selector: &Selector) -> Result<String, String> {
    let value =
        text_field(item, "organizer_upn", selector, false)?.ok_or_else(|| missing("organizer_upn", selector))?;
    let value = value.trim();
    match value.split_once('@') {
        Some((user, domain)) if !user.is_empty() && domain.contains('.') && !value.contains(char::is_whitespace) => {
            Ok(value.to_lowercase())
        }
        _ => Err(format!("organizer_upn {value:?} is not a user principal name or e-mail address (name@domain)")),
    }
}

/// The Teams join link: an absolute https URL.
fn join_url(item: &Value, selector: &Selector) -> Result<String, String> {
    let value = text_field(item, "join_url", selector, false)?.ok_or_else(|| missing("join_url", selector))?;
    let value = value.trim();
    match reqwest::Url::parse(value) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some() => Ok(value.to_owned()),
        _ => Err(format!("join_url {value:?} is not a Teams join link (an https URL)")),
    }
}

pub(super) fn missing(name: &str, pointer: &Selector) -> String {
    format!("{name} (at {pointer}) is missing")
}

pub(super) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
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
#[path = "wire_tests.rs"]
mod tests;
