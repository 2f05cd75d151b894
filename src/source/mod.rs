//! The event platform's meeting list (the generic JSON connector): fetches
//! one page at a time and validates each item. Owns no state but the
//! platform's current token, and calls no other regsync module but
//! `config`, `domain` and `http`.

mod auth;
mod item;
mod paging;
mod registrants;
mod repair;
mod shape;
mod times;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, LINK, LOCATION, RETRY_AFTER};

use crate::config::{Paging, SourceSettings};
use crate::domain::AllowedRegistrant;

pub use paging::{Next, PageRequest};
pub use registrants::{RegistrantShape, Writeback, WritebackError};
pub use shape::PageShape;
pub use wire::Page;

/// A page that could not be fetched or read. Any of these makes the listing
/// partial.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request failed before an HTTP status arrived.
    #[error("meeting list request to {url} failed: {reason}")]
    FetchPage {
        /// The page URL (no credentials).
        url: String,
        /// Timeout, connection refused, ...
        reason: String,
    },
    /// The platform answered with an error status.
    #[error("meeting list {url} answered HTTP {status}: {body}")]
    PageStatus {
        /// The page URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
        /// The platform's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// The platform redirected to another host: not followed, since the
    /// request carries credentials.
    #[error(
        "meeting list {url} redirects to another host ({to}); regsync does not follow it, so that no credential \
         leaves the configured host: set source.base_url to the new address"
    )]
    Redirected {
        /// The page URL.
        url: String,
        /// The `Location` it named.
        to: String,
    },
    /// The page exceeds `source.max_page_bytes`.
    #[error("meeting list page is larger than source.max_page_bytes ({limit} bytes)")]
    PageTooLarge {
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("meeting list page is not valid JSON: {0}")]
    DecodePage(serde_json::Error),
    /// The JSON is not shaped as configured.
    #[error("meeting list page has an unexpected shape: {0}")]
    PageShape(String),
    /// The platform's credential could not be had: its token endpoint
    /// refused or failed, or the token file cannot be read.
    #[error("cannot get the platform's token from {from}: {reason}")]
    Token {
        /// The token endpoint or the token file.
        from: String,
        /// Why, with what to check.
        reason: String,
    },
    /// The HTTP client could not be built (bad TLS setup, bad header value).
    #[error("cannot set up the meeting list client: {0}")]
    Setup(String),
}

/// The longest a page waits before it is asked again, whatever the
/// platform's `Retry-After` says: longer, and the listing is partial.
const MAX_PAGE_BACKOFF: Duration = Duration::from_secs(60);

impl Error {
    /// How long to wait before asking again (`backoff` unless the platform
    /// said), or `None` when asking again cannot help.
    fn retry_in(&self, backoff: Duration) -> Option<Duration> {
        match self {
            Self::FetchPage { .. } => Some(backoff),
            Self::PageStatus { status, retry_after, .. } if *status == 429 || *status >= 500 || *status == 408 => {
                match retry_after {
                    Some(asked) if *asked > MAX_PAGE_BACKOFF => None,
                    Some(asked) => Some(*asked),
                    None => Some(backoff),
                }
            }
            _ => None,
        }
    }
}

/// One listing of the platform: its meetings, all registrants, or one
/// meeting's registrants; whole, or only what changed since a time.
#[derive(Debug, Clone)]
pub struct Listing {
    url: reqwest::Url,
    meeting: Option<String>,
}

impl Listing {
    /// The meeting this listing is of, if it is one meeting's.
    pub fn meeting(&self) -> Option<&str> {
        self.meeting.as_deref()
    }

    /// Only what changed at or after `since`, when the platform filters by
    /// modification time (`param` set): every page is asked with it.
    fn changed_since(
        mut self,
        settings: &SourceSettings,
        param: &str,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Self {
        if let (false, Some(since)) = (param.trim().is_empty(), since) {
            self.url.query_pairs_mut().append_pair(param.trim(), &settings.changed_since_format.format(since));
        }
        self
    }
}

/// Fetches pages of the platform's meeting list.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// `source.max_requests_per_second`, shared by every clone.
    pace: Option<Arc<governor::DefaultDirectRateLimiter>>,
    url: reqwest::Url,
    settings: SourceSettings,
    shape: PageShape,
    /// A credential that changes while regsync runs, shared by every clone.
    rotating: Option<Arc<auth::Rotating>>,
}

impl Client {
    /// Builds the client: a static auth header is set once here, a rotating
    /// one (a token file, OAuth2) is fetched per request; both are marked
    /// sensitive so they never show in debug output.
    ///
    /// # Errors
    /// `source.base_url` is missing or the token is not a valid header value.
    pub fn new(
        settings: &SourceSettings,
        default_allowed_registrant: AllowedRegistrant,
        events: Option<crate::domain::EventKind>,
    ) -> Result<Self, Error> {
        let base = settings.base_url.as_deref().ok_or_else(|| Error::Setup("source.base_url is not set".into()))?;
        let url = reqwest::Url::parse(&format!("{}{}", base.trim_end_matches('/'), settings.meetings_path))
            .map_err(|e| Error::Setup(format!("source.base_url + source.meetings_path is not a URL: {e}")))?;
        let rotating = auth::Rotating::new(settings)?.map(Arc::new);
        let headers = auth::static_headers(settings, rotating.is_some())?;
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(settings.timeout())
            .connect_timeout(Duration::from_secs(10))
            .redirect(crate::http::same_origin_redirects())
            .user_agent(crate::http::USER_AGENT)
            .build()
            .map_err(|e| Error::Setup(e.to_string()))?;
        let shape = PageShape::new(settings, default_allowed_registrant, events)?;
        let pace = std::num::NonZeroU32::new(settings.max_requests_per_second)
            .map(|rate| Arc::new(governor::RateLimiter::direct(governor::Quota::per_second(rate))));
        Ok(Self { http, pace, url, settings: settings.clone(), shape, rotating })
    }

    /// The most pages one listing may have.
    pub fn max_pages(&self) -> u32 {
        self.settings.max_pages
    }

    /// The meeting listing: everything, or (`since`) only what changed at
    /// or after that time (`source.changed_since_param`).
    pub fn meeting_listing(&self, since: Option<chrono::DateTime<chrono::Utc>>) -> Listing {
        Listing { url: self.url.clone(), meeting: None }.changed_since(
            &self.settings,
            &self.settings.changed_since_param,
            since,
        )
    }

    /// The URL of `request` in the listing at `base`.
    fn url_in(&self, base: &reqwest::Url, request: &PageRequest) -> reqwest::Url {
        if let PageRequest::Url(url) = request {
            return url.clone();
        }
        let s = &self.settings;
        let mut url = base.clone();
        {
            let mut query = url.query_pairs_mut();
            query.append_pair(&s.limit_param, &s.page_size.to_string());
            match request {
                PageRequest::First if s.paging == Paging::PageNumber => {
                    query.append_pair(&s.page_param, &s.first_page.to_string());
                }
                PageRequest::First if s.paging == Paging::Offset => {
                    query.append_pair(&s.offset_param, "0");
                }
                PageRequest::First | PageRequest::Url(_) => {}
                PageRequest::Cursor(cursor) => {
                    query.append_pair(&s.cursor_param, cursor);
                }
                PageRequest::Number(n) => {
                    query.append_pair(&s.page_param, &n.to_string());
                }
                PageRequest::Offset(n) => {
                    query.append_pair(&s.offset_param, &n.to_string());
                }
            }
        }
        url
    }

    /// What follows `page` of `listing`, fetched as `request`, with
    /// `listed` items read so far.
    pub fn next<T>(&self, listing: &Listing, request: &PageRequest, page: &Page<T>, listed: u64) -> Next {
        self.next_in(&listing.url, request, page, listed)
    }

    fn next_in<T>(&self, base: &reqwest::Url, request: &PageRequest, page: &Page<T>, listed: u64) -> Next {
        let limits = paging::Limits { page_size: self.settings.page_size, first_page: self.settings.first_page };
        paging::next(self.settings.paging, request, &self.url_in(base, request), page, listed, limits)
    }

    /// Fetches and validates the page `request` names, at the configured
    /// pace. A failure a later try may not meet (network, 5xx, 429) is
    /// tried again up to `source.page_retries` times, after the platform's
    /// `Retry-After` or a doubling backoff.
    ///
    /// # Errors
    /// Any failure to get a well-formed page; item-level problems are not
    /// errors but rejections inside the page.
    #[tracing::instrument(skip_all, fields(page = ?request))]
    pub async fn fetch_page(&self, listing: &Listing, request: &PageRequest) -> Result<Page, Error> {
        self.fetch(&listing.url, request, |body| wire::parse_page(body, &self.shape)).await
    }

    /// [`Client::fetch_page`] for any listing at `base` whose pages `parse`
    /// reads.
    async fn fetch<T>(
        &self,
        base: &reqwest::Url,
        request: &PageRequest,
        parse: impl Fn(&[u8]) -> Result<Page<T>, Error>,
    ) -> Result<Page<T>, Error> {
        let mut backoff = Duration::from_millis(500);
        let mut tries = 0;
        let mut reauthorized = false;
        loop {
            if let Some(pace) = &self.pace {
                pace.until_ready().await;
            }
            let authorization = match &self.rotating {
                Some(rotating) => Some(rotating.header().await?),
                None => None,
            };
            let wait = match self.fetch_once(base, request, authorization.clone(), &parse).await {
                // An expired or rotated token: once more with a fresh one.
                Err(Error::PageStatus { status: 401, .. }) if !reauthorized && authorization.is_some() => {
                    reauthorized = true;
                    if let (Some(rotating), Some(sent)) = (&self.rotating, &authorization) {
                        rotating.refused(sent).await;
                    }
                    tracing::info!("the platform refused its token; asking again with a fresh one");
                    continue;
                }
                Err(e) if tries < self.settings.page_retries => match e.retry_in(backoff) {
                    Some(wait) => wait,
                    None => return Err(e),
                },
                done => return done,
            };
            tries += 1;
            tracing::warn!(retry_in_ms = wait.as_millis() as u64, tries, "meeting list page failed; asking again");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(MAX_PAGE_BACKOFF);
        }
    }

    async fn fetch_once<T>(
        &self,
        base: &reqwest::Url,
        request: &PageRequest,
        authorization: Option<HeaderValue>,
        parse: &impl Fn(&[u8]) -> Result<Page<T>, Error>,
    ) -> Result<Page<T>, Error> {
        let url = self.url_in(base, request);
        // The URL as logs and records show it: without the user and password
        // that base_url may carry.
        let mut shown = url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        let shown = shown.to_string();
        let fetch_error = |e: reqwest::Error| Error::FetchPage {
            url: shown.clone(),
            reason: crate::http::error_text(&e.without_url(), "source.timeout_ms"),
        };
        let mut get = self.http.get(url.clone());
        if let Some(authorization) = authorization {
            get = get.header(AUTHORIZATION, authorization);
        }
        let mut response = get.send().await.map_err(fetch_error)?;
        let status = response.status();
        let header = |name| response.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_owned);
        let (link, retry_after) = (header(LINK), header(RETRY_AFTER));
        let limit = self.settings.max_page_bytes;
        if response.content_length().is_some_and(|len| len as usize > limit) {
            return Err(Error::PageTooLarge { limit });
        }
        if status.is_redirection() {
            let to = response.headers().get(LOCATION).and_then(|l| l.to_str().ok()).unwrap_or("?").to_owned();
            return Err(Error::Redirected { url: shown, to });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
            if body.len() + chunk.len() > limit {
                return Err(Error::PageTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            let retry_after =
                retry_after.and_then(|v| crate::http::parse_retry_after(&v, std::time::SystemTime::now()));
            return Err(Error::PageStatus { url: shown, status: status.as_u16(), body: text, retry_after });
        }
        let mut page = parse(&body)?;
        if self.settings.paging == Paging::LinkHeader {
            page.next_url = link.as_deref().and_then(paging::link_next);
        }
        Ok(page)
    }
}
