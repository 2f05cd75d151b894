//! Which page comes next, for each paging style a platform uses, and when a
//! listing ends: no next link or cursor, `has_more` false, an empty or short
//! page, or `total` reached. A page the platform marks incomplete makes the
//! listing partial.

use reqwest::Url;

use super::Page;
use crate::config::Paging;

/// Which page to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PageRequest {
    /// The first page.
    First,
    /// The page at this cursor.
    Cursor(String),
    /// The page at this URL (`next_url`, `link_header`).
    Url(Url),
    /// This page number.
    Number(u64),
    /// The page starting at this item offset.
    Offset(u64),
}

/// What follows a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Fetch this.
    Page(PageRequest),
    /// The listing is complete.
    End,
    /// The listing must stop here, short: why.
    Partial(String),
}

/// What follows `page`, fetched as `request` from `url`, with `listed` items
/// read so far (this page's included).
pub fn next<T>(paging: Paging, request: &PageRequest, url: &Url, page: &Page<T>, listed: u64, limits: Limits) -> Next {
    if page.complete == Some(false) {
        return Next::Partial("the platform marked the result incomplete (source.complete_pointer)".into());
    }
    let short = page.items < limits.page_size as usize;
    if page.has_more == Some(false) || page.items == 0 || page.total.is_some_and(|total| listed >= total) {
        return Next::End;
    }
    match paging {
        Paging::Cursor => page.next_cursor.clone().map_or(Next::End, |c| Next::Page(PageRequest::Cursor(c))),
        Paging::NextUrl | Paging::LinkHeader => match &page.next_url {
            None => Next::End,
            Some(next) => match url.join(next) {
                // Credentials go only where the listing began.
                Ok(next) if next.origin() == url.origin() => Next::Page(PageRequest::Url(next)),
                Ok(next) => Next::Partial(format!(
                    "the next page is on another host ({}); not followed",
                    next.origin().ascii_serialization()
                )),
                Err(e) => Next::Partial(format!("the next page URL {next:?} is not a URL: {e}")),
            },
        },
        // Without `has_more` or `total`, a short page is the last one.
        Paging::PageNumber | Paging::Offset if short && page.has_more.is_none() && page.total.is_none() => Next::End,
        Paging::PageNumber => {
            let current = match request {
                PageRequest::Number(n) => *n,
                _ => limits.first_page,
            };
            Next::Page(PageRequest::Number(current.saturating_add(1)))
        }
        Paging::Offset => {
            let current = match request {
                PageRequest::Offset(n) => *n,
                _ => 0,
            };
            Next::Page(PageRequest::Offset(current.saturating_add(page.items as u64)))
        }
    }
}

/// The settings paging depends on.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Items asked for per page.
    pub page_size: u32,
    /// `page_number`: the first page's number.
    pub first_page: u64,
}

/// The `rel="next"` target of an RFC 8288 `Link` header, if any.
pub fn link_next(header: &str) -> Option<String> {
    header.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once('>')?;
        let target = target.trim().strip_prefix('<')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.strip_prefix("rel=")
                .is_some_and(|rel| rel.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
        });
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever numbers a platform sends (a total, a page count, items
        /// on a page) and wherever the listing is, the next step is decided
        /// without a panic.
        #[test]
        fn any_remote_numbers_decide_the_next_page_without_a_panic(
            items in any::<usize>(),
            total in proptest::option::of(any::<u64>()),
            listed in any::<u64>(),
            at in any::<u64>(),
            first_page in any::<u64>(),
            page_size in any::<u32>(),
        ) {
            let page: Page = Page { items, total, ..Page::default() };
            let limits = Limits { page_size, first_page };
            for paging in [Paging::PageNumber, Paging::Offset, Paging::Cursor, Paging::NextUrl] {
                for request in [PageRequest::First, PageRequest::Number(at), PageRequest::Offset(at)] {
                    let _ = next(paging, &request, &url(), &page, listed, limits);
                }
            }
        }
    }

    fn page(items: usize) -> Page {
        Page { items, ..Page::default() }
    }

    const LIMITS: Limits = Limits { page_size: 2, first_page: 1 };

    fn url() -> Url {
        Url::parse("https://events.example.com/api/events?page_size=2").unwrap()
    }

    #[test]
    fn each_style_asks_for_the_page_after_this_one() {
        let mut p = page(2);
        p.next_cursor = Some("c2".into());
        assert_eq!(
            next(Paging::Cursor, &PageRequest::First, &url(), &p, 2, LIMITS),
            Next::Page(PageRequest::Cursor("c2".into()))
        );
        p.next_url = Some("/api/events?page=2".into());
        assert_eq!(
            next(Paging::NextUrl, &PageRequest::First, &url(), &p, 2, LIMITS),
            Next::Page(PageRequest::Url(Url::parse("https://events.example.com/api/events?page=2").unwrap()))
        );
        assert_eq!(
            next(Paging::PageNumber, &PageRequest::First, &url(), &p, 2, LIMITS),
            Next::Page(PageRequest::Number(2))
        );
        assert_eq!(
            next(Paging::PageNumber, &PageRequest::Number(2), &url(), &p, 4, LIMITS),
            Next::Page(PageRequest::Number(3))
        );
        assert_eq!(
            next(Paging::Offset, &PageRequest::Offset(2), &url(), &p, 4, LIMITS),
            Next::Page(PageRequest::Offset(4))
        );
    }

    #[test]
    fn a_listing_ends_on_has_more_false_an_empty_or_short_page_or_the_total() {
        let mut p = page(2);
        p.next_cursor = Some("c2".into());
        p.has_more = Some(false);
        assert_eq!(next(Paging::Cursor, &PageRequest::First, &url(), &p, 2, LIMITS), Next::End);
        assert_eq!(next(Paging::Cursor, &PageRequest::First, &url(), &page(0), 0, LIMITS), Next::End);
        assert_eq!(next(Paging::PageNumber, &PageRequest::First, &url(), &page(1), 1, LIMITS), Next::End);
        let mut p = page(2);
        p.total = Some(4);
        assert_eq!(next(Paging::Offset, &PageRequest::Offset(2), &url(), &p, 4, LIMITS), Next::End);
        assert_eq!(
            next(Paging::Offset, &PageRequest::First, &url(), &p, 2, LIMITS),
            Next::Page(PageRequest::Offset(2))
        );
    }

    #[test]
    fn an_incomplete_result_or_a_next_page_on_another_host_stops_the_listing_short() {
        let mut p = page(2);
        p.complete = Some(false);
        assert!(matches!(next(Paging::Cursor, &PageRequest::First, &url(), &p, 2, LIMITS), Next::Partial(_)));
        let mut p = page(2);
        p.next_url = Some("https://elsewhere.example.net/api/events?page=2".into());
        assert!(matches!(next(Paging::LinkHeader, &PageRequest::First, &url(), &p, 2, LIMITS), Next::Partial(_)));
    }

    #[test]
    fn the_next_link_is_found_among_others() {
        let header = r#"<https://x.example/e?page=1>; rel="prev", <https://x.example/e?page=3>; rel="next""#;
        assert_eq!(link_next(header).as_deref(), Some("https://x.example/e?page=3"));
        assert_eq!(link_next(r#"<https://x.example/e?page=1>; rel="first""#), None);
        assert_eq!(link_next("</e?page=2>; rel=next"), Some("/e?page=2".into()));
    }
}
