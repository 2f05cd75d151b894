//! Registrants at Graph. Meeting registration (beta): a registrant is
//! created under the meeting's external registration with the platform's id
//! as its `id`, and its personal `joinWebUrl` comes back **only** in that
//! answer (a GET or list shows it as null); removed by `DELETE`. Webinar
//! (v1.0): a registration is created with the platform's id as
//! `externalRegistrationInformation.registrationId`; with application
//! permission the answer is 204 without a body, so its id is found by
//! listing the webinar's registrations; cancelled by `POST …/cancel`.
//! <https://learn.microsoft.com/graph/api/externalmeetingregistrant-post?view=graph-rest-beta>
//! <https://learn.microsoft.com/graph/api/virtualeventwebinar-post-registrations>

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

/// The most characters `externalRegistrationInformation.registrationId` takes.
pub const MAX_REGISTRATION_ID_CHARS: usize = 256;

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

/// One webinar registration as the list shows it.
#[derive(Deserialize)]
struct Registration {
    id: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "externalRegistrationInformation", default)]
    external: Option<External>,
}

#[derive(Deserialize)]
struct External {
    #[serde(rename = "registrationId", default)]
    registration_id: Option<String>,
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

#[derive(Deserialize)]
struct Webinar {
    #[serde(default)]
    status: Option<String>,
}

/// What a webinar registration carries.
#[derive(Debug, Clone, Copy)]
pub struct WebinarRegistration<'a> {
    /// The platform's registrant id.
    pub external_id: &'a str,
    /// Who.
    pub person: &'a Person,
    /// `preferredTimezone` when the person names none.
    pub default_timezone: &'a str,
    /// `preferredLanguage` when the person names none.
    pub default_language: &'a str,
}

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

    /// The webinar's status (`draft`, `published`, `canceled`, …).
    ///
    /// # Errors
    /// Classified failures; a 404 is `Rejected`.
    pub async fn webinar_status(
        &self,
        permit: Permit,
        webinar: &str,
        calls: &mut Vec<CallRecord>,
    ) -> Result<String, Error> {
        let (status, bytes) = self.send(permit, Method::GET, webinar_path(webinar)?, None, calls).await?;
        let webinar: Webinar = serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
        Ok(webinar.status.unwrap_or_default())
    }

    /// Registers a person for a webinar. With application permission the
    /// answer is 204 without a body: `None`; with delegated permission 201
    /// with the registration: its id.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn register_for_webinar(
        &self,
        permit: Permit,
        webinar: &str,
        registration: WebinarRegistration<'_>,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Option<String>, Error> {
        let p = registration.person;
        let body = json!({
            "firstName": p.first_name,
            "lastName": p.last_name,
            "email": p.email,
            "preferredTimezone": p.preferred_timezone.as_deref().unwrap_or(registration.default_timezone),
            "preferredLanguage": p.preferred_language.as_deref().unwrap_or(registration.default_language),
            "externalRegistrationInformation": {"registrationId": registration.external_id},
        });
        let path = format!("{}/registrations", webinar_path(webinar)?);
        let (status, bytes) = self.send(permit, Method::POST, path, Some(&body), calls).await?;
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(None);
        }
        let created: Registration = serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
        Ok(Some(created.id).filter(|id| !id.is_empty()))
    }

    /// The ids of the webinar registrations whose external id is
    /// `external_id` and that are not cancelled (more than one: a
    /// duplicate, found only by listing). First by the person's
    /// e-mail, the alternate key Graph's metadata declares: a get of one
    /// registration accepts the `.All` application permissions, where the
    /// list is documented for resource-specific consent only. Where that
    /// get is refused (not permitted, or the key not supported), by
    /// listing the webinar's registrations.
    ///
    /// # Errors
    /// Classified failures; a next link elsewhere is an unexpected body.
    pub async fn find_webinar_registrations(
        &self,
        permit: Permit,
        webinar: &str,
        external_id: &str,
        email: Option<&str>,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Vec<String>, Error> {
        let ours = |r: &Registration| {
            r.external.as_ref().and_then(|e| e.registration_id.as_deref()) == Some(external_id)
                && !r.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("canceled"))
        };
        let permit = match email.filter(|e| !e.is_empty()) {
            None => permit,
            Some(email) => {
                let token = permit.token.clone();
                let answer = self.send(permit, Method::GET, registration_by_email(webinar, email)?, None, calls).await;
                match answer {
                    Ok((status, bytes)) => {
                        let found: Registration =
                            serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
                        // Another registration of the same address (made in
                        // Teams, or an older one) says nothing of ours.
                        if ours(&found) {
                            return Ok(vec![found.id]);
                        }
                    }
                    Err(Error::Rejected { status: 404, .. }) => {
                        mark_last(calls, "absent");
                        return Ok(Vec::new());
                    }
                    // The key is not usable by this app: the list decides,
                    // and a refusal of the API itself shows there.
                    Err(Error::Rejected { status: 400 | 403 | 405, .. } | Error::Retired { .. }) => {}
                    Err(e) => return Err(e),
                }
                self.permit_as(token).await
            }
        };
        let path = format!("{}/registrations", webinar_path(webinar)?);
        // The whole list: a duplicate (two live registrations for one
        // person) is found with the first.
        self.pick_listed(permit, path, calls, |r: Registration| ours(&r).then_some(r.id), false).await
    }

    /// Which of the two lookups of a webinar registration this app may make
    /// (for `regsync doctor`): the get by e-mail of an address no one
    /// registered (a 404 means permitted), and the first page of the list.
    /// Reads only.
    pub async fn webinar_lookup_access(
        &self,
        permit: Permit,
        webinar: &str,
        calls: &mut Vec<CallRecord>,
    ) -> Result<(Result<(), Error>, Result<(), Error>), Error> {
        let token = permit.token.clone();
        let by_email = registration_by_email(webinar, "regsync-doctor-probe@invalid.example")?;
        let by_email = match self.send(permit, Method::GET, by_email, None, calls).await {
            Ok(_) | Err(Error::Rejected { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        };
        let list = format!("{}/registrations", webinar_path(webinar)?);
        let list = self.send(self.permit_as(token).await, Method::GET, list, None, calls).await.map(drop);
        Ok((by_email, list))
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
    async fn pick_listed<T: DeserializeOwned, R>(
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

    /// Cancels webinar registration `id`; a 404 means it is already gone.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn cancel_webinar_registration(
        &self,
        permit: Permit,
        webinar: &str,
        id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Deleted, Error> {
        let path = format!("{}/registrations/{}/cancel", webinar_path(webinar)?, segment(id)?);
        let answer = self.send(permit, Method::POST, path, None, calls).await;
        Ok(if absent_on_404(answer, calls)?.is_some() { Deleted::Removed } else { Deleted::AlreadyGone })
    }
}

fn webinar_path(webinar: &str) -> Result<String, Error> {
    Ok(format!("/solutions/virtualEvents/webinars/{}", segment(webinar)?))
}

/// The get of one webinar registration by its `email` alternate key (an
/// OData string literal, its quotes doubled).
fn registration_by_email(webinar: &str, email: &str) -> Result<String, Error> {
    Ok(format!("{}/registrations(email='{}')", webinar_path(webinar)?, segment(&email.replace('\'', "''"))?))
}
