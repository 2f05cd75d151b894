//! A virtual event's registration configuration — capacity, waitlist,
//! manual approval, which explain the statuses Teams answers with — and its
//! registration questions: predefined ones (a `label`, answered with text)
//! and custom ones (an `answerInputType`, choices). Application permission
//! `VirtualEvent.Read.All` with the access policy.
//! <https://learn.microsoft.com/graph/api/virtualeventregistrationconfiguration-list-questions>

use serde::Deserialize;

use super::virtual_events::event_path;
use super::{Client, Error, Permit};
use crate::domain::{AnswerInput, CallRecord, RegistrationQuestion, VirtualEvent};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Question {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    is_required: Option<bool>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    answer_input_type: Option<String>,
    #[serde(default)]
    answer_choices: Option<Vec<String>>,
}

impl Question {
    fn into_domain(self) -> RegistrationQuestion {
        let input = match self.answer_input_type.as_deref() {
            Some("singleChoice") => AnswerInput::SingleChoice,
            Some("multiChoice") => AnswerInput::MultiChoice,
            Some("boolean") => AnswerInput::Boolean,
            // text, multilineText, a predefined question's single line, and
            // a future type: text is what Graph takes.
            _ => AnswerInput::Text,
        };
        RegistrationQuestion {
            display_name: self.display_name.or_else(|| self.label.clone()).unwrap_or_default(),
            id: self.id,
            label: self.label,
            required: self.is_required.unwrap_or(false),
            input,
            choices: self.answer_choices.unwrap_or_default(),
        }
    }
}

/// How an event takes registrations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrationConfiguration {
    /// How many may register; `None`: no limit.
    pub capacity: Option<u32>,
    /// Registrations past the capacity wait.
    pub waitlist: bool,
    /// The organizer approves each registration.
    pub manual_approval: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Configuration {
    #[serde(default)]
    capacity: Option<u32>,
    #[serde(default)]
    is_waitlist_enabled: Option<bool>,
    #[serde(default)]
    is_manual_approval_enabled: Option<bool>,
}

impl Client {
    /// The event's registration configuration.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn registration_configuration(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        calls: &mut Vec<CallRecord>,
    ) -> Result<RegistrationConfiguration, Error> {
        let path = format!("{}/registrationConfiguration", event_path(event)?);
        let (status, bytes) = self.send(permit, reqwest::Method::GET, path, None, calls).await?;
        let c: Configuration =
            serde_json::from_slice(&bytes).map_err(|e| super::answer::unexpected(status, &e.to_string()))?;
        Ok(RegistrationConfiguration {
            capacity: c.capacity.filter(|n| *n > 0),
            waitlist: c.is_waitlist_enabled.unwrap_or(false),
            manual_approval: c.is_manual_approval_enabled.unwrap_or(false),
        })
    }

    /// The event's registration questions.
    ///
    /// # Errors
    /// Classified failures.
    pub async fn registration_questions(
        &self,
        permit: Permit,
        event: &VirtualEvent,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Vec<RegistrationQuestion>, Error> {
        let path = format!("{}/registrationConfiguration/questions", event_path(event)?);
        let listed = self.pick_listed(permit, path, calls, |q: Question| Some(q.into_domain()), false).await?;
        Ok(listed)
    }
}
