//! Registrants at Graph under a meeting registration (beta): a registrant
//! is created under the meeting's external registration with the
//! platform's id as its `id`, and its personal `joinWebUrl` comes back
//! **only** in that answer (a GET or list shows it as null); removed by
//! `DELETE`. And the reading of a Graph collection page by page, which the
//! virtual events' registrations share.
//! <https://learn.microsoft.com/graph/api/externalmeetingregistrant-post?view=graph-rest-beta>

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::answer::{absent_on_404, mark_last, unexpected};
use super::client::segment;
use super::{Client, Deleted, Error, Permit};
use crate::domain::{AllowedRegistrant, CallRecord, Location, Person};

/// `@odata.type` of a registrant regsync creates.
const REGISTRANT_TYPE: &str = "#microsoft.graph.externalMeetingRegistrant";

/// A registrant Graph created, with its personal join link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    /// Its id (the platform's, as sent).
    pub id: String,
    /// Its join link.
    pub join_web_url: String,
}

#[derive(Deserialize)]
struct RegistrantBody {
    id: String,
    #[serde(rename = "joinWebUrl", default)]
    join_web_url: Option<String>,
}

/// One page of a Graph collection.
#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

/// The most pages regsync reads of one collection.
const MAX_PAGES: usize = 1_000;

impl Client {
    fn registrants_path(&self, at: &Location) -> Result<String, Error> {
        Ok(format!("{}/registrants", self.path(at)?))
    }

    /// Enrols a registrant with the platform's id (plus the Entra tenant
    /// and user for an `organization` meeting).
    ///
    /// # Errors
    /// Classified failures; `Conflict` when it may exist already.
    pub async fn enrol(
        &self,
        permit: Permit,
        at: &Location,
        external_id: &str,
        audience: AllowedRegistrant,
        person: &Person,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Enrolled, Error> {
        let mut body = json!({"@odata.type": REGISTRANT_TYPE, "id": external_id});
        if audience == AllowedRegistrant::Organization {
            body["tenantId"] = json!(person.tenant_id);
            body["userId"] = json!(person.user_id);
        }
        let path = self.registrants_path(at)?;
        let (status, bytes) = self.send(permit, Method::POST, path, Some(&body), calls).await?;
        let created: RegistrantBody = serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
        match created.join_web_url.filter(|url| !url.is_empty()) {
            Some(join_web_url) if !created.id.is_empty() => Ok(Enrolled { id: created.id, join_web_url }),
            _ => Err(unexpected(status, "the created registrant has no id or joinWebUrl")),
        }
    }

    /// Whether Graph holds registrant `id` at `at` (its join link cannot be
    /// read back). Graph has no `GET` of one external registrant (the
    /// resource offers List, Create and Delete), so this lists them,
    /// following `@odata.nextLink`; a 404 (no registration) means none.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn registrant_exists(
        &self,
        permit: Permit,
        at: &Location,
        id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> Result<bool, Error> {
        let path = self.registrants_path(at)?;
        let found = self.find_listed(permit, path, calls, |r: RegistrantBody| (r.id == id).then_some(())).await;
        // No registration there: its registrants went with it.
        Ok(absent_on_404(found, calls)?.flatten().is_some())
    }

    /// Removes registrant `id` at `at`; a 404 means it is already gone.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn unenrol(
        &self,
        permit: Permit,
        at: &Location,
        id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Deleted, Error> {
        let path = format!("{}/{}", self.registrants_path(at)?, segment(id)?);
        let answer = self.send(permit, Method::DELETE, path, None, calls).await;
        Ok(if absent_on_404(answer, calls)?.is_some() { Deleted::Removed } else { Deleted::AlreadyGone })
    }

    /// The first item of the collection at `path` that `pick` accepts.
    async fn find_listed<T: DeserializeOwned, R>(
        &self,
        permit: Permit,
        path: String,
        calls: &mut Vec<CallRecord>,
        pick: impl FnMut(T) -> Option<R>,
    ) -> Result<Option<R>, Error> {
        Ok(self.pick_listed(permit, path, calls, pick, true).await?.into_iter().next())
    }

    /// The items of the collection at `path` that `pick` accepts (only the
    /// first, reading no further, with `first_only`), following
    /// `@odata.nextLink` within Graph; the last call is marked `absent` when
    /// none is.
    pub(super) async fn pick_listed<T: DeserializeOwned, R>(
        &self,
        permit: Permit,
        mut path: String,
        calls: &mut Vec<CallRecord>,
        mut pick: impl FnMut(T) -> Option<R>,
        first_only: bool,
    ) -> Result<Vec<R>, Error> {
        let mut picked = Vec::new();
        let token = permit.token.clone();
        let mut permit = Some(permit);
        let mut seen = std::collections::HashSet::new();
        // A bound on pages, so a looping next link cannot loop us.
        for _ in 0..MAX_PAGES {
            let this = match permit.take() {
                Some(first) => first,
                None => self.permit_as(token.clone()).await,
            };
            let (status, bytes) = self.send(this, Method::GET, path.clone(), None, calls).await?;
            let page: Page<T> = serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
            picked.extend(page.value.into_iter().filter_map(&mut pick));
            if first_only && !picked.is_empty() {
                picked.truncate(1);
                return Ok(picked);
            }
            seen.insert(path.clone());
            match page.next_link {
                None => {
                    if picked.is_empty() {
                        mark_last(calls, "absent");
                    }
                    return Ok(picked);
                }
                // Only within Graph: the token goes with the request.
                Some(next) => match next.strip_prefix(&self.base_url) {
                    Some(rest) if rest.starts_with('/') && !seen.contains(rest) => path = rest.to_owned(),
                    Some(rest) if rest.starts_with('/') => {
                        return Err(unexpected(status, "@odata.nextLink repeats a page already read"))
                    }
                    _ => return Err(unexpected(status, "@odata.nextLink points outside graph.base_url")),
                },
            }
        }
        Err(unexpected(StatusCode::OK, &format!("more than {MAX_PAGES} pages in one collection")))
    }
}
