//! Registrations on v1.0 virtual events — webinars and town halls, which
//! share one shape under their own collection. A registration is created
//! with the platform's id as `externalRegistrationInformation.registrationId`
//! and the answers to the event's registration questions; with application
//! permission the answer is 204 without a body, so its id is found by the
//! `email` alternate key or by listing; cancelled by `POST …/cancel`.
//! <https://learn.microsoft.com/graph/api/virtualeventwebinar-post-registrations>

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::answer::{absent_on_404, mark_last, unexpected};
use super::client::segment;
use super::{Client, Deleted, Error, Permit};
use crate::domain::{CallRecord, Person, QuestionAnswer, TeamsStatus, VirtualEvent};

/// The most characters `externalRegistrationInformation.registrationId` takes.
pub const MAX_REGISTRATION_ID_CHARS: usize = 256;

/// One registration as Graph shows it.
#[derive(Deserialize)]
pub(super) struct Registration {
    pub(super) id: String,
    #[serde(default)]
    pub(super) status: Option<String>,
    #[serde(rename = "externalRegistrationInformation", default)]
    pub(super) external: Option<External>,
}

#[derive(Deserialize)]
pub(super) struct External {
    #[serde(rename = "registrationId", default)]
    pub(super) registration_id: Option<String>,
}

impl Registration {
    fn external_id(&self) -> Option<&str> {
        self.external.as_ref().and_then(|e| e.registration_id.as_deref())
    }
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    status: Option<String>,
}

/// What a registration carries.
#[derive(Debug, Clone, Copy)]
pub struct EventRegistration<'a> {
    /// The platform's registrant id.
    pub external_id: &'a str,
    /// Who.
    pub person: &'a Person,
    /// `preferredTimezone` when the person names none.
    pub default_timezone: &'a str,
    /// `preferredLanguage` when the person names none.
    pub default_language: &'a str,
    /// Answers to the event's registration questions.
    pub answers: &'a [QuestionAnswer],
}

/// A registration regsync made, as the event's list shows it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRegistration {
    /// Graph's id.
    pub id: String,
    /// The platform's id, as sent at create.
    pub external_id: String,
    /// Its status in Teams.
    pub status: TeamsStatus,
}

pub(super) fn event_path(event: &VirtualEvent) -> Result<String, Error> {
    Ok(format!("/solutions/virtualEvents/{}/{}", event.kind.collection(), segment(&event.id)?))
}

/// The get of one registration by its `email` alternate key (an OData
/// string literal, its quotes doubled).
fn registration_by_email(event: &VirtualEvent, email: &str) -> Result<String, Error> {
    Ok(format!("{}/registrations(email='{}')", event_path(event)?, segment(&email.replace('\'', "''"))?))
}

impl Client {
    /// The event's status (`draft`, `published`, `canceled`, …).
    ///
    /// # Errors
    /// Classified failures; a 404 is `Rejected`.
    pub async fn event_status(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        calls: &mut Vec<CallRecord>,
    ) -> Result<String, Error> {
        let (status, bytes) = self.send(permit, Method::GET, event_path(event)?, None, calls).await?;
        let found: Event = serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
        Ok(found.status.unwrap_or_default())
    }

    /// Registers a person. With application permission the answer is 204
    /// without a body: `None`; with delegated permission 201 with the
    /// registration: its id.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn register_for_event(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        registration: EventRegistration<'_>,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Option<String>, Error> {
        let p = registration.person;
        let mut body = json!({
            "firstName": p.first_name,
            "lastName": p.last_name,
            "email": p.email,
            "preferredTimezone": p.preferred_timezone.as_deref().unwrap_or(registration.default_timezone),
            "preferredLanguage": p.preferred_language.as_deref().unwrap_or(registration.default_language),
            "externalRegistrationInformation": {"registrationId": registration.external_id},
        });
        if !registration.answers.is_empty() {
            body["registrationQuestionAnswers"] = registration.answers.iter().map(QuestionAnswer::to_graph).collect();
        }
        let path = format!("{}/registrations", event_path(event)?);
        let (status, bytes) = self.send(permit, Method::POST, path, Some(&body), calls).await?;
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(None);
        }
        let created: Registration = serde_json::from_slice(&bytes).map_err(|e| unexpected(status, &e.to_string()))?;
        Ok(Some(created.id).filter(|id| !id.is_empty()))
    }

    /// The ids of the registrations whose external id is `external_id` and
    /// that are not cancelled (more than one: a duplicate, found only by
    /// listing). First by the person's e-mail, the alternate key Graph's
    /// metadata declares: a get of one registration accepts the `.All`
    /// application permissions, where the list is documented for
    /// resource-specific consent only. Where that get is refused (not
    /// permitted, or the key not supported), by listing.
    ///
    /// # Errors
    /// Classified failures; a next link elsewhere is an unexpected body.
    pub async fn find_event_registrations(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        external_id: &str,
        email: Option<&str>,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Vec<String>, Error> {
        let ours = |r: &Registration| {
            r.external_id() == Some(external_id)
                && !r.status.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("canceled"))
        };
        let permit = match email.filter(|e| !e.is_empty()) {
            None => permit,
            Some(email) => {
                let token = permit.token.clone();
                let answer = self.send(permit, Method::GET, registration_by_email(event, email)?, None, calls).await;
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
        let path = format!("{}/registrations", event_path(event)?);
        // The whole list: a duplicate (two live registrations for one
        // person) is found with the first.
        self.pick_listed(permit, path, calls, |r: Registration| ours(&r).then_some(r.id), false).await
    }

    /// Every registration of the event that regsync made (it carries an
    /// external id), with its status in Teams: the status read-back.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn list_event_registrations(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Vec<ListedRegistration>, Error> {
        let path = format!("{}/registrations", event_path(event)?);
        self.pick_listed(
            permit,
            path,
            calls,
            |r: Registration| {
                let external_id = r.external_id()?.to_owned();
                let status = TeamsStatus::from_graph(r.status.as_deref()?)?;
                Some(ListedRegistration { id: r.id, external_id, status })
            },
            false,
        )
        .await
    }

    /// Which of the two lookups of a registration this app may make (for
    /// `regsync doctor`): the get by e-mail of an address no one registered
    /// (a 404 means permitted), and the first page of the list. Reads only.
    ///
    /// # Errors
    /// The event's path cannot be built.
    pub async fn event_lookup_access(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        calls: &mut Vec<CallRecord>,
    ) -> Result<(Result<(), Error>, Result<(), Error>), Error> {
        let token = permit.token.clone();
        let by_email = registration_by_email(event, "regsync-doctor-probe@invalid.example")?;
        let by_email = match self.send(permit, Method::GET, by_email, None, calls).await {
            Ok(_) | Err(Error::Rejected { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        };
        let list = format!("{}/registrations", event_path(event)?);
        let list = self.send(self.permit_as(token).await, Method::GET, list, None, calls).await.map(drop);
        Ok((by_email, list))
    }

    /// Cancels registration `id`; a 404 means it is already gone.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn cancel_event_registration(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        id: &str,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Deleted, Error> {
        let path = format!("{}/registrations/{}/cancel", event_path(event)?, segment(id)?);
        let answer = self.send(permit, Method::POST, path, None, calls).await;
        Ok(if absent_on_404(answer, calls)?.is_some() { Deleted::Removed } else { Deleted::AlreadyGone })
    }
}
