//! Registrants listed from the platform after the meetings: one listing, or
//! one per active meeting, each read by the shared reader (`listing`) and
//! stored page by page. After a complete listing, registrants it no longer
//! holds are cancelled under `sync.on_missing`, as meetings are.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::super::listing::{read_pages, Extent, Listing, Newest};
use super::super::{Ctx, SyncError};
use crate::config::OnMissing;
use crate::domain::{ExternalRegistrant, RejectedItem};
use crate::source::{self, Next, Page, PageRequest, RegistrantShape};
use crate::store;

/// What one registrant listing read and changed.
#[derive(Debug, Clone, Default)]
pub struct RegistrantPoll {
    /// Registrants read, valid or not.
    pub seen: u64,
    /// Registrants inserted or changed.
    pub changed: u64,
    /// Items rejected.
    pub rejected: u64,
    /// Why a listing was partial, if one was.
    pub partial: Option<String>,
}

/// One registrant listing of the platform.
struct Registrants<'a> {
    source: &'a source::Client,
    shape: &'a RegistrantShape,
    listing: source::Listing,
}

impl Listing for Registrants<'_> {
    type Item = ExternalRegistrant;

    fn fetch(
        &self,
        request: &PageRequest,
    ) -> impl Future<Output = Result<Page<ExternalRegistrant>, source::Error>> + Send {
        self.source.fetch_registrants(self.shape, &self.listing, request)
    }

    fn next(&self, request: &PageRequest, page: &Page<ExternalRegistrant>, listed: u64) -> Next {
        self.source.next(&self.listing, request, page, listed)
    }
}

/// Lists every registrant (one listing, or one per active meeting) into the
/// store. A page that fails ends that listing; what was read is kept.
///
/// # Errors
/// The database failed.
pub async fn poll(ctx: &Arc<Ctx>, run_id: i64) -> Result<RegistrantPoll, SyncError> {
    let settings = &ctx.settings.registrants;
    // Validated at start; an error here is a bug, reported as one.
    let shape = RegistrantShape::new(settings).map_err(|e| SyncError::Task(e.to_string()))?;
    let meetings: Vec<Option<String>> = if settings.path.contains("{meeting_id}") {
        store::registrants::active_meetings(&ctx.pool).await?.into_iter().map(Some).collect()
    } else {
        vec![None]
    };
    let mut report = RegistrantPoll::default();
    // Each registrant once across the listings of this poll.
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let listed_at = chrono::Utc::now();
    let overlap = ctx.settings.source.changed_since_overlap();
    let incremental = !settings.changed_since_param.trim().is_empty();
    for meeting in meetings {
        // Each listing resumes from its own watermark: a meeting listed for
        // the first time is listed whole.
        let key = match &meeting {
            Some(meeting) => format!("registrants:{meeting}"),
            None => "registrants".to_owned(),
        };
        let extent = Extent::of(ctx, &key, &settings.changed_since_param, listed_at).await?;
        let listing = match ctx.source.registrant_listing(settings, meeting.as_deref(), extent.since()) {
            Ok(listing) => listing,
            Err(e) => {
                report.partial = Some(e.to_string());
                continue;
            }
        };
        let listing = Registrants { source: &ctx.source, shape: &shape, listing };
        let (pages_tx, mut pages_rx) = mpsc::channel(2);
        let mut listed = Listed::default();
        let mut newest = Newest::new(listed_at, overlap);
        let store = async {
            while let Some(page) = pages_rx.recv().await {
                listed.note(&page, meeting.as_deref());
                page.accepted.iter().for_each(|r| newest.note(r.updated_at));
                store_page(ctx, run_id, page, &mut seen, &mut report).await?;
            }
            Ok::<_, SyncError>(())
        };
        let ((_, partial), stored) = tokio::join!(read_pages(ctx, &listing, pages_tx), store);
        stored?;
        if let Some(why) = partial {
            tracing::warn!(meeting = meeting.as_deref().unwrap_or(""), error = %why, "registrant listing partial");
            report.partial = Some(why);
            continue;
        }
        if incremental {
            store::watermarks::advance(&ctx.pool, &key, newest.at(), extent.is_full(), listed_at).await?;
        }
        // Only a complete full listing tells who is missing.
        if extent.is_full() && ctx.settings.sync.on_missing == OnMissing::Unregister {
            report.changed += cancel_missing(ctx, meeting.as_deref(), listed).await?;
        }
    }
    Ok(report)
}

/// Every registrant one listing holds, valid or not.
#[derive(Default)]
struct Listed {
    /// (meeting, registrant) of each item.
    keys: Vec<(String, String)>,
    /// An item whose meeting a flat listing did not say (rejected or
    /// ignored): who is missing cannot be told.
    unsure: bool,
}

impl Listed {
    fn note(&mut self, page: &Page<ExternalRegistrant>, meeting: Option<&str>) {
        let accepted = page.accepted.iter().map(|r| (r.meeting_external_id.clone(), r.external_id.clone()));
        self.keys.extend(accepted);
        let others = page.ignored.iter().chain(page.rejected.iter().filter_map(|r| r.external_id.as_ref()));
        match meeting {
            Some(meeting) => self.keys.extend(others.map(|id| (meeting.to_owned(), id.clone()))),
            None => self.unsure |= page.ignored.len() + page.rejected.len() > 0,
        }
    }
}

/// Registrants a complete listing no longer holds are cancelled. An empty
/// listing is far likelier a platform fault than everyone leaving.
async fn cancel_missing(ctx: &Ctx, meeting: Option<&str>, listed: Listed) -> Result<u64, SyncError> {
    if listed.unsure {
        tracing::info!("the registrant listing holds items without a meeting; nobody is cancelled as missing");
        return Ok(0);
    }
    if listed.keys.is_empty() {
        tracing::warn!(meeting = meeting.unwrap_or(""), "the platform listed no registrants; nobody is cancelled");
        return Ok(0);
    }
    Ok(store::registrants::unregister_missing(&ctx.pool, meeting, &listed.keys).await?)
}

/// Stores one page: the repeats of a registrant rejected with the reason,
/// the rest in one upsert.
async fn store_page(
    ctx: &Ctx,
    run_id: i64,
    page: Page<ExternalRegistrant>,
    seen: &mut HashSet<(String, String)>,
    report: &mut RegistrantPoll,
) -> Result<(), SyncError> {
    report.seen += page.items as u64;
    let mut rejected = page.rejected;
    let mut registrants: Vec<ExternalRegistrant> = Vec::with_capacity(page.accepted.len());
    for r in page.accepted {
        if seen.insert((r.meeting_external_id.clone(), r.external_id.clone())) {
            registrants.push(r);
        } else {
            rejected.push(RejectedItem {
                reason: format!(
                    "registrant: id {:?} of meeting {:?} appears more than once in the listing; the first \
                     occurrence was used",
                    r.external_id, r.meeting_external_id
                ),
                external_id: Some(r.external_id),
                raw: String::new(),
            });
        }
    }
    report.rejected += rejected.len() as u64;
    store::runs::insert_rejected(&ctx.pool, Some(run_id), &rejected).await?;
    let changed = store::registrants::upsert_page(&ctx.pool, &registrants).await?;
    if changed > 0 {
        store::push::notify_due(&ctx.pool).await?;
    }
    report.changed += changed;
    Ok(())
}
