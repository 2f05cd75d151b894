//! Reading one paged listing of the platform, for every kind of row: page
//! after page until it ends, fails or cannot be trusted further (a page it
//! was led to before, more than `source.max_pages`, shutdown). Written once,
//! so meetings and registrants stop a looping platform the same way.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::config::SyncSettings;
use crate::source::{Error, Next, Page, PageRequest};
use crate::store::watermarks::Watermark;

use super::Ctx;

/// One paged listing of the platform.
pub(super) trait Listing {
    /// What its pages hold.
    type Item: Send;

    /// The page `request` names, read and validated.
    fn fetch(&self, request: &PageRequest) -> impl Future<Output = Result<Page<Self::Item>, Error>> + Send;

    /// What follows `page`, with `listed` items read so far.
    fn next(&self, request: &PageRequest, page: &Page<Self::Item>, listed: u64) -> Next;
}

/// Fetches `listing` page by page into `pages`. Returns the pages read and,
/// for a partial listing, why.
pub(super) async fn read_pages<L: Listing>(
    ctx: &Ctx,
    listing: &L,
    pages: mpsc::Sender<Page<L::Item>>,
) -> (u32, Option<String>) {
    // Hashes, not the requests: a listing remembers 8 bytes a page however
    // long the platform's cursors or URLs are (and at most source.max_pages).
    let seen_request = RandomState::new();
    let mut requested: HashSet<u64> = HashSet::new();
    let mut request = PageRequest::First;
    let (mut read, mut listed) = (0, 0);
    loop {
        let page = match listing.fetch(&request).await {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, pages_read = read, "listing is partial; nothing is deregistered this cycle");
                return (read, Some(e.to_string()));
            }
        };
        read += 1;
        listed += page.items as u64;
        let next = listing.next(&request, &page, listed);
        if pages.send(page).await.is_err() {
            return (read, None); // storing failed; the caller reports that
        }
        request = match next {
            Next::End => return (read, None),
            Next::Partial(why) => return (read, Some(why)),
            Next::Page(next) if !requested.insert(seen_request.hash_one(&next)) => {
                return (read, Some(format!("the platform led to page {next:?} twice; the listing was cut there")));
            }
            Next::Page(_) if read >= ctx.source.max_pages() => {
                return (
                    read,
                    Some(format!("the listing has more than source.max_pages ({}) pages", ctx.source.max_pages())),
                );
            }
            Next::Page(_) if ctx.shutdown.is_cancelled() => {
                return (read, Some("shutdown began during the listing".into()))
            }
            Next::Page(next) => next,
        };
    }
}

/// How much of a listing a poll reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Extent {
    /// Everything: only a complete full listing tells what is missing.
    Full,
    /// What changed at or after this time (the watermark less the overlap).
    ChangedSince(DateTime<Utc>),
}

impl Extent {
    /// A full listing unless the platform filters by modification time
    /// (`incremental`), a watermark is known, and the full-listing schedule
    /// has not fired since the last complete full listing.
    pub(super) fn choose(
        incremental: bool,
        watermark: Watermark,
        sync: &SyncSettings,
        overlap: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Self {
        match (incremental, watermark.changed_since, watermark.full_listed_at) {
            (true, Some(newest), Some(full)) if !sync.full_listing_due(full, now) => {
                let overlap = chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX);
                Self::ChangedSince(newest.checked_sub_signed(overlap).unwrap_or(DateTime::<Utc>::MIN_UTC))
            }
            _ => Self::Full,
        }
    }

    /// How much of listing `key` to read now: [`Extent::choose`] with its
    /// watermark, read only when the platform filters (`param` set).
    ///
    /// # Errors
    /// The watermark could not be read.
    pub(super) async fn of(
        ctx: &super::Ctx,
        key: &str,
        param: &str,
        listed_at: DateTime<Utc>,
    ) -> Result<Self, crate::store::Error> {
        let incremental = !param.trim().is_empty();
        let watermark = match incremental {
            true => crate::store::watermarks::of(&ctx.pool, key).await?,
            false => Watermark::default(),
        };
        let overlap = ctx.settings.source.changed_since_overlap();
        Ok(Self::choose(incremental, watermark, &ctx.settings.sync, overlap, listed_at))
    }

    /// The time to filter by, for an incremental listing.
    pub(super) fn since(self) -> Option<DateTime<Utc>> {
        match self {
            Self::Full => None,
            Self::ChangedSince(at) => Some(at),
        }
    }

    /// Whether everything is read.
    pub(super) fn is_full(self) -> bool {
        self == Self::Full
    }
}

/// The newest modification time a listing shows: the next watermark. A time
/// ahead of the listing's start by more than the overlap is not believed (a
/// platform clock far ahead, a bad value): it would make later listings skip
/// real changes until the next full listing.
#[derive(Debug, Clone, Copy)]
pub(super) struct Newest {
    at: Option<DateTime<Utc>>,
    ceiling: DateTime<Utc>,
    /// Times not believed.
    pub(super) ahead: u64,
}

impl Newest {
    /// Nothing seen yet, for a listing that began at `listed_at`.
    pub(super) fn new(listed_at: DateTime<Utc>, overlap: std::time::Duration) -> Self {
        let overlap = chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX);
        Self { at: None, ceiling: listed_at.checked_add_signed(overlap).unwrap_or(DateTime::<Utc>::MAX_UTC), ahead: 0 }
    }

    /// One item's modification time.
    pub(super) fn note(&mut self, at: Option<DateTime<Utc>>) {
        match at {
            Some(at) if at > self.ceiling => self.ahead += 1,
            Some(at) => self.at = self.at.max(Some(at)),
            None => {}
        }
    }

    /// The newest believed time.
    pub(super) fn at(&self) -> Option<DateTime<Utc>> {
        self.at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn sync(schedule: &str) -> SyncSettings {
        SyncSettings { full_listing_schedule: schedule.into(), ..SyncSettings::default() }
    }

    const FIVE_MINUTES: std::time::Duration = std::time::Duration::from_secs(300);

    #[test]
    fn a_listing_is_incremental_only_with_a_filter_a_watermark_and_no_full_listing_due() {
        let now = at("2026-12-06T12:00:00Z");
        let known = Watermark {
            changed_since: Some(at("2026-12-06T11:58:00Z")),
            full_listed_at: Some(at("2026-12-06T03:00:01Z")),
        };
        let nightly = sync("0 0 3 * * *");
        assert_eq!(
            Extent::choose(true, known, &nightly, FIVE_MINUTES, now),
            Extent::ChangedSince(at("2026-12-06T11:53:00Z")),
            "the watermark less the overlap"
        );
        assert_eq!(Extent::choose(false, known, &nightly, FIVE_MINUTES, now), Extent::Full, "no filter configured");
        let unseen = Watermark { changed_since: None, ..known };
        assert_eq!(Extent::choose(true, unseen, &nightly, FIVE_MINUTES, now), Extent::Full, "no time seen yet");
        let never_full = Watermark { full_listed_at: None, ..known };
        assert_eq!(Extent::choose(true, never_full, &nightly, FIVE_MINUTES, now), Extent::Full, "never listed whole");
        let yesterday = Watermark { full_listed_at: Some(at("2026-12-05T03:00:01Z")), ..known };
        assert_eq!(Extent::choose(true, yesterday, &nightly, FIVE_MINUTES, now), Extent::Full, "the schedule fired");
    }

    #[test]
    fn a_modification_time_far_ahead_of_the_listing_is_not_made_the_watermark() {
        let mut newest = Newest::new(at("2026-12-06T12:00:00Z"), FIVE_MINUTES);
        newest.note(Some(at("2026-12-06T11:00:00Z")));
        newest.note(None);
        newest.note(Some(at("2026-12-06T12:04:00Z")));
        newest.note(Some(at("2031-01-01T00:00:00Z")));
        newest.note(Some(at("2026-12-06T10:00:00Z")));
        assert_eq!(newest.at(), Some(at("2026-12-06T12:04:00Z")));
        assert_eq!(newest.ahead, 1);
    }
}
