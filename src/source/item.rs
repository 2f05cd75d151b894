//! One item outside a listing: pushed by the platform's webhook, or read
//! alone (`source.item_path`, `registrants.item_path`) when the webhook only
//! names it. Validated exactly as a listed item is.

use serde_json::Value;

use super::wire::{self, Page};
use super::{Client, Error, PageRequest, RegistrantShape};
use crate::config::RegistrantsSettings;
use crate::domain::ExternalRegistrant;

impl Client {
    /// A meeting the platform pushed, as a page of one.
    pub fn meeting_item(&self, item: &Value) -> Page {
        Page::of_one(item, |item| wire::parse_item(item, &self.shape))
    }

    /// A registrant the platform pushed, as a page of one; `meeting` is
    /// theirs when the registrant path is per meeting.
    pub fn registrant_item(
        &self,
        shape: &RegistrantShape,
        item: &Value,
        meeting: Option<&str>,
    ) -> Page<ExternalRegistrant> {
        Page::of_one(item, |item| shape.parse(item, meeting))
    }

    /// Reads meeting `id` alone; `None` when the platform does not have it.
    ///
    /// # Errors
    /// As [`Client::fetch_page`].
    pub async fn fetch_meeting(&self, id: &str) -> Result<Option<Page>, Error> {
        let path = match self.settings.item_path.trim() {
            "" => format!("{}/{{id}}", self.settings.meetings_path),
            path => path.to_owned(),
        };
        let url = self.item_url(&path, None, id)?;
        self.fetch_one(url, |item| self.meeting_item(item)).await
    }

    /// Reads registrant `id` of `meeting` alone; `None` when the platform
    /// does not have them.
    ///
    /// # Errors
    /// As [`Client::fetch_page`].
    pub async fn fetch_registrant(
        &self,
        settings: &RegistrantsSettings,
        shape: &RegistrantShape,
        meeting: &str,
        id: &str,
    ) -> Result<Option<Page<ExternalRegistrant>>, Error> {
        let path = match settings.item_path.trim() {
            "" => format!("{}/{{id}}", settings.path),
            path => path.to_owned(),
        };
        let url = self.item_url(&path, Some(meeting), id)?;
        let per_meeting = settings.path.contains("{meeting_id}").then_some(meeting);
        self.fetch_one(url, |item| self.registrant_item(shape, item, per_meeting)).await
    }

    /// `path` below `source.base_url` with the ids put in, percent-encoded.
    fn item_url(&self, path: &str, meeting: Option<&str>, id: &str) -> Result<reqwest::Url, Error> {
        let segment = |v: &str| {
            wire::path_segment(v).ok_or_else(|| Error::Setup(format!("id {v:?} cannot be put into a URL path")))
        };
        let mut path = path.replace("{id}", &segment(id)?);
        if let Some(meeting) = meeting {
            path = path.replace("{meeting_id}", &segment(meeting)?);
        }
        let base = self.settings.base_url.as_deref().unwrap_or_default().trim_end_matches('/');
        reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| Error::Setup(format!("source.base_url + the item path is not a URL: {e}")))
    }

    /// Reads one item at `url` with the listing's auth, pace, retries and
    /// limits; a 404 or 410 is `None`.
    async fn fetch_one<T>(
        &self,
        url: reqwest::Url,
        parse: impl Fn(&Value) -> Page<T>,
    ) -> Result<Option<Page<T>>, Error> {
        let request = PageRequest::Url(url.clone());
        match self.fetch(&url, &request, |body| Ok(parse(&wire::decode(body)?))).await {
            Ok(page) => Ok(Some(page)),
            Err(Error::PageStatus { status: 404 | 410, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
