//! Tests of `wire`: pages and items as platforms write them.

use super::*;
use crate::source::times::parse_time;
use serde_json::json;

fn shape_with(change: impl FnOnce(&mut crate::config::SourceSettings)) -> PageShape {
    let mut settings = crate::config::SourceSettings { max_item_bytes: 4_096, ..Default::default() };
    change(&mut settings);
    PageShape::new(&settings, AllowedRegistrant::Everyone, None).expect("a valid shape")
}

fn shape() -> PageShape {
    shape_with(|_| {})
}

fn page(items: Value) -> Page {
    let body = json!({ "meetings": items, "next_cursor": "c2" }).to_string();
    parse_page(body.as_bytes(), &shape()).expect("page parses")
}

fn reason_for(item: Value) -> String {
    let page = page(json!([item]));
    assert!(page.accepted.is_empty(), "item was accepted");
    page.rejected[0].reason.clone()
}

fn good() -> Value {
    json!({"id": "evt-1", "organizer_id": "org-1", "online_meeting_id": "MSp1", "status": "active"})
}

#[test]
fn a_valid_item_becomes_a_meeting_with_defaults() {
    let page = page(json!([good()]));
    assert_eq!(page.next_cursor.as_deref(), Some("c2"));
    let m = &page.accepted[0];
    assert_eq!(m.external_id.as_str(), "evt-1");
    assert_eq!(m.allowed_registrant, AllowedRegistrant::Everyone);
    assert_eq!(m.desired, Desired::Registered);
}

#[test]
fn cancelled_items_want_no_registration() {
    let mut item = good();
    item["status"] = json!("Cancelled");
    assert_eq!(page(json!([item])).accepted[0].desired, Desired::Unregistered);
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
        (json!({"id": "..", "organizer_id": "o", "online_meeting_id": "m"}), "id is \"..\", which is not an id"),
        (json!({"id": " . ", "organizer_id": "o", "online_meeting_id": "m"}), "id is \".\", which is not an id"),
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
    assert_eq!(page.accepted[0].external_id.as_str(), "c");
}

#[test]
fn an_odd_updated_at_is_read_when_it_can_be_and_never_rejects() {
    let mut item = good();
    item["updated_at"] = json!("2026-11-28 10:00:00");
    assert!(page(json!([item.clone()])).accepted[0].updated_at.is_some());
    item["updated_at"] = json!("yesterday");
    assert_eq!(page(json!([item])).accepted[0].updated_at, None);
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
    assert_eq!(page.accepted[0].external_id.as_str(), "42");
    assert_eq!(page.accepted[0].online_meeting.to_string(), "MSp?#%é");
}

#[test]
fn an_oversized_item_is_rejected_and_its_raw_text_truncated() {
    let mut item = good();
    item["notes"] = json!("x".repeat(10_000));
    let page = page(json!([item, good()]));
    assert!(page.rejected[0].reason.contains("bytes, more than source.max_item_bytes"));
    assert!(page.rejected[0].raw.len() <= RAW_KEEP_BYTES + 4);
    assert_eq!(page.accepted.len(), 1);
}

#[test]
fn a_page_without_items_is_an_error_not_an_empty_listing() {
    let err = parse_page(br#"{"data": []}"#, &shape()).unwrap_err();
    assert!(err.to_string().contains("no items array"), "{err}");
    assert!(parse_page(b"{not json", &shape()).is_err());
}

#[test]
fn custom_pointers_map_another_platforms_list() {
    let shape = shape_with(|s| {
        s.items_pointer = "/data/items".into();
        s.cursor_pointer = "/paging/next".into();
        s.fields.id = "/uid".into();
        s.fields.organizer_id = "/teams/organizer".into();
        s.fields.online_meeting_id = "/teams/meeting".into();
    });
    let body = json!({"data": {"items": [{"uid": "u1", "teams": {"organizer": "o", "meeting": "m"}}]}, "paging": {"next": null}});
    let page = parse_page(body.to_string().as_bytes(), &shape).unwrap();
    assert_eq!(page.accepted[0].external_id.as_str(), "u1");
    assert_eq!(page.next_cursor, None);
}

#[test]
fn a_jsonpath_finds_a_value_inside_an_array_of_named_fields() {
    let shape = shape_with(|s| {
        s.fields.online_meeting_id = "$.customFields[?@.name=='Teams meeting'].value".into();
    });
    let mut item = good();
    item.as_object_mut().unwrap().remove("online_meeting_id");
    item["customFields"] = json!([{"name": "Room", "value": "A"}, {"name": "Teams meeting", "value": "MSpFromPath"}]);
    let body = json!({ "meetings": [item] }).to_string();
    let page = parse_page(body.as_bytes(), &shape).unwrap();
    assert_eq!(page.accepted[0].online_meeting.to_string(), "MSpFromPath");
}

#[test]
fn the_platforms_own_status_words_and_booleans_map_and_ignored_items_are_kept_apart() {
    let shape = shape_with(|s| {
        s.fields.status = "/live".into();
        s.status_map = [("true", "active"), ("false", "cancelled"), ("Draft", "ignore")]
            .into_iter()
            .map(|(w, m)| (w.to_owned(), m.to_owned()))
            .collect();
    });
    let with = |id: &str, live: Value| {
        let mut item = good();
        item["id"] = json!(id);
        item["live"] = live;
        item
    };
    let items =
        json!([with("a", json!(true)), with("b", json!(false)), with("c", json!("draft")), with("d", json!("gone"))]);
    let page = parse_page(json!({ "meetings": items }).to_string().as_bytes(), &shape).unwrap();
    let desired: Vec<_> = page.accepted.iter().map(|m| (m.external_id.as_str(), m.desired)).collect();
    assert_eq!(desired, [("a", Desired::Registered), ("b", Desired::Unregistered)]);
    assert_eq!(page.ignored, ["c"]);
    assert!(page.rejected[0].reason.contains("source.status_map.gone"), "{}", page.rejected[0].reason);
}

#[test]
fn paging_hints_are_read_and_an_empty_cursor_pointer_means_no_paging() {
    let shape = shape_with(|s| {
        s.cursor_pointer = String::new();
        s.items_pointer = String::new();
        s.has_more_pointer = "/0/more".into();
    });
    let page = parse_page(json!([good()]).to_string().as_bytes(), &shape).unwrap();
    assert_eq!((page.items, page.next_cursor, page.has_more), (1, None, None));

    let shape = shape_with(|s| {
        s.has_more_pointer = "/pagination/has_more_items".into();
        s.total_pointer = "/pagination/object_count".into();
        s.complete_pointer = "/complete".into();
    });
    let body = json!({"meetings": [good()], "next_cursor": "c", "complete": false,
                      "pagination": {"has_more_items": true, "object_count": 7}});
    let page = parse_page(body.to_string().as_bytes(), &shape).unwrap();
    assert_eq!((page.has_more, page.total, page.complete), (Some(true), Some(7), Some(false)));
}

proptest::proptest! {
    /// Any date a platform sends is read without a panic, and what is kept
    /// is a time PostgreSQL can store.
    #[test]
    fn any_remote_date_is_read_without_a_panic_and_kept_only_within_storable_years(
        year in proptest::num::i32::ANY, text in ".*", secs in proptest::num::i64::ANY,
    ) {
        for value in [
            format!("{year:04}-12-31T23:59:59Z"),
            format!("{year}-01-01 00:00:00"),
            format!("+{year}-06-15T12:00:00.123456789+14:00"),
            text.clone(),
            secs.to_string(),
        ] {
            if let Some(t) = parse_time(&value) {
                proptest::prop_assert!((1..=9999).contains(&chrono::Datelike::year(&t)), "{value} -> {t}");
            }
        }
    }
}

#[test]
fn a_date_postgresql_cannot_store_is_left_out_not_a_reason_to_fail() {
    assert!(parse_time("2026-12-06T10:00:00Z").is_some());
    assert_eq!(parse_time("-10000-01-01 00:00:00"), None);
    assert_eq!(parse_time("+262142-12-31T23:59:59Z"), None);
}
