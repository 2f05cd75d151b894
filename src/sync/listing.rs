//! Reading one paged listing of the platform, for every kind of row: page
//! after page until it ends, fails or cannot be trusted further (a page it
//! was led to before, more than `source.max_pages`, shutdown). Written once,
//! so meetings and registrants stop a looping platform the same way.

use std::collections::HashSet;
use std::future::Future;
use std::hash::{BuildHasher, RandomState};

use tokio::sync::mpsc;

use crate::source::{Error, Next, Page, PageRequest};

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
