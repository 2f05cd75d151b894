//! `regsync plan`: what the next cycle would do for each meeting, from the
//! platform's listing and the store, decided by the same state machine the
//! engine runs — without writing anything at Graph or in the database.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::mpsc;

use super::ingest::read_listing;
use super::plan::{after_delete, plan, Plan, Progress};
use super::{Ctx, SyncError};
use crate::config::OnMissing;
use crate::domain::{
    Desired, ExternalMeeting, Location, MeetingRef, OnlineMeetingId, OrganizerId, OrganizerRef, RowState,
};
use crate::store::claims::Stored;
use crate::store::{self, Claimed};

/// What the next cycle would do for one meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    /// These Graph calls, in order.
    Calls(Vec<Call>),
    /// No Graph call; why.
    Nothing(String),
    /// Not stored: the item is rejected, with the reason.
    Reject(String),
}

/// One Graph call the next cycle would make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// GET the registration, then act on what Graph holds.
    Lookup,
    /// POST a registration.
    Create,
    /// DELETE the registration.
    Delete,
    /// Resolve the organizer's UPN or the join link to Graph's id (unless
    /// another meeting resolved it first), then act.
    Resolve,
}

impl fmt::Display for Intent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Calls(calls) => {
                let words: Vec<&str> = calls
                    .iter()
                    .map(|c| match c {
                        Call::Lookup => "look up (then act on what Graph holds)",
                        Call::Create => "create",
                        Call::Delete => "delete",
                        Call::Resolve => "resolve the organizer or join link (then act)",
                    })
                    .collect();
                f.write_str(&words.join(", then "))
            }
            Self::Nothing(why) => write!(f, "nothing ({why})"),
            Self::Reject(why) => write!(f, "reject: {why}"),
        }
    }
}

/// The next cycle, meeting by meeting (by platform id), and why the listing
/// was partial if it was.
#[derive(Debug, Clone, Default)]
pub struct Preview {
    /// Each meeting's intent.
    pub meetings: BTreeMap<String, Intent>,
    /// The listing is partial: nothing would be treated as missing.
    pub partial: Option<String>,
}

/// Reads the listing and the store and plans each meeting.
///
/// # Errors
/// The database failed.
pub async fn preview(ctx: &Arc<Ctx>) -> Result<Preview, SyncError> {
    let (pages_tx, mut pages_rx) = mpsc::channel(2);
    let reader = tokio::spawn(read_listing(ctx.clone(), super::listing::Extent::Full, pages_tx));
    let mut listed: Vec<ExternalMeeting> = Vec::new();
    let mut preview = Preview::default();
    while let Some(page) = pages_rx.recv().await {
        for r in page.rejected {
            let id = r.external_id.clone().unwrap_or_else(|| "(no id)".into());
            preview.meetings.insert(id, Intent::Reject(r.reason));
        }
        for id in page.ignored {
            preview.meetings.insert(id, Intent::Nothing("its status is ignored (source.status_map)".into()));
        }
        listed.extend(page.accepted);
    }
    (_, preview.partial) = reader.await.map_err(|e| SyncError::Task(e.to_string()))?;
    let stored: HashMap<String, Stored> =
        store::claims::stored(&ctx.pool).await?.into_iter().map(|s| (s.row.external_id.0.clone(), s)).collect();
    let mut holders: HashMap<Location, String> = stored
        .values()
        .filter(|s| s.row.desired == Desired::Registered)
        .map(|s| (s.row.location.clone(), s.row.external_id.0.clone()))
        .collect();
    for m in &listed {
        let id = m.external_id.0.clone();
        if preview.meetings.contains_key(&id) {
            preview.meetings.insert(id.clone(), Intent::Reject("the id appears more than once in the listing".into()));
            continue;
        }
        let at = location(m, stored.get(&id).map(|s| &s.row));
        if m.desired == Desired::Registered && at.is_known() {
            if let Some(holder) = holders.get(&at).filter(|h| **h != id) {
                let why = format!("the Teams meeting is already mapped to platform meeting {holder:?}");
                preview.meetings.insert(id, Intent::Reject(why));
                continue;
            }
            holders.insert(at, id.clone());
        }
        let intent = match stored.get(&id) {
            Some(s) => intent(s, Some(m)),
            None => calls(&new_row(m)),
        };
        preview.meetings.insert(id, intent);
    }
    let complete = preview.partial.is_none() && !listed.is_empty();
    for (id, s) in &stored {
        if !preview.meetings.contains_key(id) {
            let unregister = complete && ctx.settings.sync.on_missing == OnMissing::Unregister;
            let intent = if unregister {
                intent(s, None)
            } else {
                Intent::Nothing("missing from the listing; kept (sync.on_missing)".into())
            };
            preview.meetings.insert(id.clone(), intent);
        }
    }
    Ok(preview)
}

/// Where the platform puts `m`: its ids, or those `stored` resolved from the
/// same UPN and join link; a part still to resolve is empty, as in a claim.
fn location(m: &ExternalMeeting, stored: Option<&Claimed>) -> Location {
    let organizer = match (&m.organizer, stored) {
        (OrganizerRef::Id(id), _) => id.clone(),
        (OrganizerRef::Upn(upn), Some(s)) if s.organizer_upn.as_ref() == Some(upn) => s.location.organizer.clone(),
        (OrganizerRef::Upn(_), _) => OrganizerId(String::new()),
    };
    let meeting = match (&m.online_meeting, stored) {
        (MeetingRef::Id(id), _) => id.clone(),
        (MeetingRef::JoinUrl(url), Some(s)) if s.join_url.as_ref() == Some(url) => s.location.meeting.clone(),
        (MeetingRef::JoinUrl(_), _) => OnlineMeetingId(String::new()),
    };
    Location { organizer, meeting }
}

/// What the claim of a new meeting's fresh row would see.
fn new_row(m: &ExternalMeeting) -> Claimed {
    Claimed {
        claim: crate::store::claims::Claim {
            lease: crate::store::claims::Lease { row: 0, token: uuid::Uuid::nil() },
            attempts: 0,
            needs_lookup: false,
        },
        external_id: m.external_id.clone(),
        desired: m.desired,
        location: location(m, None),
        organizer_upn: m.organizer.upn().map(str::to_owned),
        join_url: m.online_meeting.join_url().map(str::to_owned),
        allowed_registrant: m.allowed_registrant,
        actual: None,
        lookup_at: None,
        graph_checked: false,
    }
}

/// A stored meeting's intent: `listed` is what the platform says now
/// (`None`: missing from a complete listing, treated as cancelled).
fn intent(stored: &Stored, listed: Option<&ExternalMeeting>) -> Intent {
    let mut row = stored.row.clone();
    let changed = match listed {
        Some(m) => {
            let at = location(m, Some(&row));
            let now = (m.desired, &at, m.organizer.upn(), m.online_meeting.join_url(), m.allowed_registrant);
            let before = (
                row.desired,
                &row.location,
                row.organizer_upn.as_deref(),
                row.join_url.as_deref(),
                row.allowed_registrant,
            );
            let changed = now != before;
            row.desired = m.desired;
            row.location = at;
            row.organizer_upn = m.organizer.upn().map(str::to_owned);
            row.join_url = m.online_meeting.join_url().map(str::to_owned);
            row.allowed_registrant = m.allowed_registrant;
            changed
        }
        None => {
            let changed = row.desired != Desired::Unregistered;
            row.desired = Desired::Unregistered;
            changed
        }
    };
    if changed {
        return calls(&row);
    }
    match stored.state {
        RowState::Synced => Intent::Nothing("in step".into()),
        RowState::Failed => Intent::Nothing(format!(
            "failed until the platform changes it or `regsync retry {}`: {}",
            row.external_id,
            stored.last_error.as_deref().unwrap_or("no reason recorded")
        )),
        RowState::InFlight => Intent::Nothing("a worker holds it now".into()),
        _ if stored.next_attempt_at > Utc::now() => {
            Intent::Nothing(format!("retrying at {}: {}", stored.next_attempt_at, calls(&row)))
        }
        _ => calls(&row),
    }
}

/// The calls a reconcile of `row` would make, assuming each answers as
/// asked: a lookup's answer is unknown, so the plan stops there.
fn calls(row: &Claimed) -> Intent {
    if row.desired == Desired::Registered && row.next_lookup().is_some() {
        return Intent::Calls(vec![Call::Resolve]);
    }
    let mut progress = Progress::from_claim(row);
    let mut calls = Vec::new();
    loop {
        match plan(row, &progress) {
            Plan::Done if calls.is_empty() => return Intent::Nothing("in step".into()),
            Plan::Done => return Intent::Calls(calls),
            Plan::Fail(why) => return Intent::Nothing(why),
            Plan::Lookup(_) => {
                calls.push(Call::Lookup);
                return Intent::Calls(calls);
            }
            Plan::Create(_) => {
                calls.push(Call::Create);
                return Intent::Calls(calls);
            }
            Plan::Delete(_) => {
                calls.push(Call::Delete);
                after_delete(&mut progress, true);
            }
        }
    }
}
