//! A virtual event's registration configuration (capacity, waitlist,
//! manual approval) and its registration questions, and what they mean for
//! a registration: a required question left unanswered is refused with 400
//! (Microsoft does not document the refusal's code; the simulator's
//! assumption), an approval-gated event takes a registration as
//! `pendingApproval`, a full one with a waitlist as `waitlisted`.

use axum::extract::{Path, State as AxumState};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::*;

/// An event's `registrationConfiguration`.
#[derive(Debug, Clone, Default)]
pub struct RegistrationConfig {
    /// How many may register (0: no limit).
    pub capacity: usize,
    /// Registrations past the capacity wait.
    pub waitlist: bool,
    /// The organizer approves each registration.
    pub manual_approval: bool,
}

/// One registration question, as Graph lists it.
#[derive(Debug, Clone)]
pub struct SimQuestion {
    /// Its id.
    pub id: String,
    /// Its display name.
    pub display_name: String,
    /// `Some(label)` for a predefined question (`jobTitle`, …).
    pub label: Option<String>,
    /// `text`, `multilineText`, `singleChoice`, `multiChoice`, `boolean`.
    pub input: String,
    /// Its choices.
    pub choices: Vec<String>,
    /// Whether an answer is required.
    pub required: bool,
}

impl SimQuestion {
    fn to_graph(&self) -> Value {
        match &self.label {
            Some(label) => json!({"@odata.type": "#microsoft.graph.virtualEventRegistrationPredefinedQuestion",
                "id": self.id, "displayName": self.display_name, "isRequired": self.required, "label": label}),
            None => json!({"@odata.type": "#microsoft.graph.virtualEventRegistrationCustomQuestion",
                "id": self.id, "displayName": self.display_name, "isRequired": self.required,
                "answerInputType": self.input, "answerChoices": self.choices}),
        }
    }
}

pub(super) async fn get_configuration(
    AxumState(state): AxumState<Shared>,
    Path((collection, event_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    read_event(&state, &headers, (&collection, &event_id), "GET registrationConfiguration", |_, w| {
        Json(json!({"id": event_id, "capacity": w.config.capacity,
            "isWaitlistEnabled": w.config.waitlist, "isManualApprovalEnabled": w.config.manual_approval,
            "registrationWebUrl": format!("https://events.teams.microsoft.com/event/{event_id}")}))
        .into_response()
    })
}

pub(super) async fn list_questions(
    AxumState(state): AxumState<Shared>,
    Path((collection, event_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    read_event(&state, &headers, (&collection, &event_id), "GET questions", |_, w| {
        Json(json!({"value": w.questions.iter().map(SimQuestion::to_graph).collect::<Vec<_>>()})).into_response()
    })
}

/// Whether `body`'s `registrationQuestionAnswers` answer `w`'s questions:
/// each answer names a question of the event, in its type, and every
/// required question is answered.
pub(super) fn check_answers(w: &SimWebinar, body: &Value) -> Result<(), String> {
    let given = body["registrationQuestionAnswers"].as_array().cloned().unwrap_or_default();
    for answer in &given {
        let Some(q) = w.questions.iter().find(|q| Some(q.id.as_str()) == answer["questionId"].as_str()) else {
            return Err(format!("Unknown registration question {}.", answer["questionId"]));
        };
        let fits = match q.input.as_str() {
            "boolean" => answer["booleanValue"].is_boolean(),
            "multiChoice" => answer["multiChoiceValues"]
                .as_array()
                .is_some_and(|v| v.iter().all(|c| c.as_str().is_some_and(|c| q.choices.iter().any(|x| x == c)))),
            "singleChoice" => answer["value"].as_str().is_some_and(|v| q.choices.iter().any(|c| c == v)),
            _ => answer["value"].as_str().is_some_and(|v| !v.trim().is_empty()),
        };
        if !fits {
            return Err(format!("Invalid answer to question '{}'.", q.display_name));
        }
    }
    for q in w.questions.iter().filter(|q| q.required) {
        if !given.iter().any(|a| a["questionId"].as_str() == Some(q.id.as_str())) {
            return Err(format!("Registration question '{}' is required.", q.display_name));
        }
    }
    Ok(())
}

/// The status a new registration takes in `w`.
pub(super) fn status_of_new(w: &SimWebinar) -> &'static str {
    let taken = w.registrations.iter().filter(|r| r.status == "registered").count();
    if w.config.manual_approval {
        "pendingApproval"
    } else if w.config.capacity > 0 && taken >= w.config.capacity && w.config.waitlist {
        "waitlisted"
    } else {
        "registered"
    }
}
