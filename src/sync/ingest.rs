//! One poll of the platform: page by page into the store, with rejected
//! items recorded and the missing-meeting policy applied only to a complete
//! listing.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::OnMissing;
use crate::domain::{ExternalMeeting, RejectedItem};
use crate::source::{Page, PageRequest};
use crate::store;

use super::listing::{Extent, Newest};
use super::{Ctx, SyncError};

/// What one poll read and changed.
#[derive(Debug, Clone, Default)]
pub struct PollReport {
    /// The `sync_runs` row of this cycle.
    pub run_id: i64,
    /// Pages fetched.
    pub pages: u32,
    /// Items read, valid or not.
    pub seen: u64,
    /// Meetings inserted or changed (including newly cancelled or missing).
    pub changed: u64,
    /// Items rejected.
    pub rejected: u64,
    /// Why the listing is partial; `None` when it is complete.
    pub partial: Option<String>,
    /// Whether the whole listing was read (else only what changed since
    /// the watermark: `source.changed_since_param`).
    pub full: bool,
}

impl PollReport {
    /// `complete`, `partial`, or `failed` when no page could be read (the
    /// platform refused or was down): the last is no successful poll.
    pub fn result(&self) -> &'static str {
        match (&self.partial, self.pages) {
            (None, _) => "complete",
            (Some(_), 0) => "failed",
            (Some(_), _) => "partial",
        }
    }
}

/// What a poll keeps of its listing across pages: no ids (a listing of any
/// size costs no memory; for the missing-meeting policy they are noted in
/// the database), only counts and the newest modification time.
struct Listed {
    newest: Newest,
    /// Note each page's ids for `on_missing = "unregister"`.
    note_ids: bool,
    /// Ids noted.
    ids: u64,
}

/// Validates a page and stores it: the valid meetings in one upsert, the
/// rejected items in one insert. An id repeated on the page, or already
/// stored from an earlier page of this listing, is rejected: its first
/// occurrence stands.
async fn store_page(
    ctx: &Ctx,
    (run_id, listed_at): (i64, DateTime<Utc>),
    page: Page,
    listed: &mut Listed,
    report: &mut PollReport,
) -> Result<(), SyncError> {
    page.accepted.iter().for_each(|m| listed.newest.note(m.updated_at));
    let mut rejected = page.rejected;
    let mut on_page: HashSet<String> = HashSet::with_capacity(page.accepted.len());
    let mut meetings = Vec::with_capacity(page.accepted.len());
    for meeting in page.accepted {
        if on_page.insert(meeting.external_id.0.clone()) {
            meetings.push(meeting);
        } else {
            rejected.push(repeated(meeting.external_id.0));
        }
    }
    if listed.note_ids {
        // Ignored (source.status_map) and invalid items show their meeting
        // exists: never "missing".
        let rejected_ids = rejected.iter().filter_map(|r| r.external_id.as_deref());
        let ids: Vec<&str> = on_page
            .iter()
            .map(String::as_str)
            .chain(page.ignored.iter().map(String::as_str))
            .chain(rejected_ids)
            .collect();
        listed.ids += ids.len() as u64;
        store::missing::note_listed(&ctx.pool, run_id, &ids).await?;
    }
    let upserted = store::meetings::upsert_page(&ctx.pool, &meetings, listed_at).await?;
    for (id, holder) in &upserted.shared {
        if let Some(meeting) = meetings.iter().find(|m| m.external_id.as_str() == id) {
            rejected.push(shared_teams_meeting(meeting, holder));
        }
    }
    rejected.extend(upserted.repeated.iter().cloned().map(repeated));
    report.seen += (meetings.len() + rejected.len() - upserted.shared.len() - upserted.repeated.len()) as u64;
    report.rejected += rejected.len() as u64;
    for r in &rejected {
        tracing::warn!(external_id = r.external_id.as_deref().unwrap_or(""), reason = %r.reason, "rejected platform item");
    }
    // The upsert woke every replica's workers for what it changed.
    report.changed += upserted.changed;
    store::runs::insert_rejected(&ctx.pool, Some(run_id), &rejected).await?;
    Ok(())
}

fn repeated(id: String) -> RejectedItem {
    RejectedItem {
        reason: format!("id {id:?} appears more than once in the listing; the first occurrence was used"),
        external_id: Some(id),
        raw: String::new(),
    }
}

/// The rejection of an active meeting whose Teams meeting another active
/// meeting (`holder`) already maps to: one registration cannot serve both.
pub(super) fn shared_teams_meeting(meeting: &ExternalMeeting, holder: &str) -> RejectedItem {
    RejectedItem {
        reason: format!(
            "the Teams meeting (organizer {}, online meeting {}) is already mapped to platform meeting {holder:?}; \
             a Teams meeting has one registration: map this meeting to its own Teams meeting, or cancel {holder:?} first",
            meeting.organizer, meeting.online_meeting
        ),
        external_id: Some(meeting.external_id.0.clone()),
        raw: String::new(),
    }
}

/// Pages read ahead of the one being stored: enough to keep both busy,
/// few enough that memory stays a few pages whatever the listing's size.
const READ_AHEAD: usize = 2;

/// The watermark of the meeting listing.
const LISTING: &str = "meetings";

/// Reads the listing into the store: whole, or only what changed since the
/// watermark (`source.changed_since_param`). A page that fails ends the
/// listing as partial: what was read is kept, nothing is deregistered, the
/// watermark stays.
///
/// # Errors
/// The database failed; the platform's failures are not errors here.
#[tracing::instrument(skip_all)]
pub async fn poll(ctx: &Arc<Ctx>) -> Result<PollReport, SyncError> {
    // The run's start is the listing's: rows a newer listing wrote are
    // not overwritten by this one.
    let (run_id, listed_at) = store::runs::start_run(&ctx.pool).await?;
    let source = &ctx.settings.source;
    let incremental = !source.changed_since_param.trim().is_empty();
    let extent = Extent::of(ctx, LISTING, &source.changed_since_param, listed_at).await?;
    let mut report = PollReport { run_id, full: extent.is_full(), ..PollReport::default() };
    let unregister = extent.is_full() && ctx.settings.sync.on_missing == OnMissing::Unregister;
    let mut listed =
        Listed { newest: Newest::new(listed_at, source.changed_since_overlap()), note_ids: unregister, ids: 0 };
    // Pages are fetched and parsed on another task while earlier ones are
    // stored, so a poll takes about as long as the slower of the two.
    let (pages_tx, mut pages_rx) = mpsc::channel(READ_AHEAD);
    let reader = tokio::spawn(read_listing(ctx.clone(), extent, pages_tx).in_current_span());
    while let Some(page) = pages_rx.recv().await {
        if let Err(e) = store_page(ctx, (run_id, listed_at), page, &mut listed, &mut report).await {
            reader.abort();
            return Err(e);
        }
    }
    (report.pages, report.partial) = reader.await.map_err(|e| SyncError::Task(e.to_string()))?;
    if report.partial.is_none() && incremental {
        if listed.newest.ahead > 0 {
            tracing::warn!(
                items = listed.newest.ahead,
                "items changed later than now by the platform's clock; not taken as the watermark"
            );
        }
        store::watermarks::advance(&ctx.pool, LISTING, listed.newest.at(), extent.is_full(), listed_at).await?;
    }
    // Only a complete full listing tells what is missing.
    match (unregister, report.partial.is_none(), listed.ids) {
        (false, _, _) => {}
        (true, false, _) => store::missing::forget_listed(&ctx.pool, run_id).await?,
        // An empty listing is far likelier a platform fault than a mass cancellation.
        (true, true, 0) => {
            tracing::warn!(
                "the platform listed no meetings; on_missing = unregister is not applied to an empty listing"
            );
            store::missing::forget_listed(&ctx.pool, run_id).await?;
        }
        (true, true, _) => report.changed += store::missing::unregister_missing(&ctx.pool, run_id, listed_at).await?,
    }
    tracing::info!(
        pages = report.pages,
        seen = report.seen,
        changed = report.changed,
        rejected = report.rejected,
        complete = report.partial.is_none(),
        full = report.full,
        "polled the platform"
    );
    Ok(report)
}

/// Fetches the meeting listing (as much as `extent` says) page by page into
/// `pages` ([`super::listing::read_pages`]).
pub(super) async fn read_listing(ctx: Arc<Ctx>, extent: Extent, pages: mpsc::Sender<Page>) -> (u32, Option<String>) {
    let listing = ctx.source.meeting_listing(extent.since());
    super::listing::read_pages(&ctx, &Meetings { source: &ctx.source, listing }, pages).await
}

/// The platform's meeting listing.
struct Meetings<'a> {
    source: &'a crate::source::Client,
    listing: crate::source::Listing,
}

impl super::listing::Listing for Meetings<'_> {
    type Item = ExternalMeeting;

    fn fetch(
        &self,
        request: &PageRequest,
    ) -> impl std::future::Future<Output = Result<Page, crate::source::Error>> + Send {
        self.source.fetch_page(&self.listing, request)
    }

    fn next(&self, request: &PageRequest, page: &Page, listed: u64) -> crate::source::Next {
        self.source.next(&self.listing, request, page, listed)
    }
}
