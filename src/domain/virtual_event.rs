//! The v1.0 virtual events — webinars and town halls — and what their
//! registrations carry: a status Teams may change, and answers to the
//! event's registration questions.

/// The kind of a v1.0 virtual event: both take registrations in the same
/// shape, under their own collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `/solutions/virtualEvents/webinars`.
    Webinar,
    /// `/solutions/virtualEvents/townhalls`.
    Townhall,
}

impl EventKind {
    /// Its collection under `/solutions/virtualEvents`.
    pub fn collection(self) -> &'static str {
        match self {
            Self::Webinar => "webinars",
            Self::Townhall => "townhalls",
        }
    }

    /// As an operator reads it.
    pub fn noun(self) -> &'static str {
        match self {
            Self::Webinar => "webinar",
            Self::Townhall => "town hall",
        }
    }

    /// As the store keeps it.
    pub(super) fn key(self) -> &'static str {
        match self {
            Self::Webinar => "webinar",
            Self::Townhall => "townhall",
        }
    }
}

/// One webinar or town hall.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualEvent {
    /// Webinar or town hall.
    pub kind: EventKind,
    /// Graph's id of it.
    pub id: String,
}

impl std::fmt::Display for VirtualEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind.noun(), self.id)
    }
}

/// A registration's status in Teams, in the platform's words
/// (`writeback.status_body`'s `{status}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TeamsStatus {
    /// `registered`.
    Registered,
    /// `canceled`: by the person, or by the organizer in Teams.
    Cancelled,
    /// `waitlisted`: the event is full and keeps a waitlist.
    Waitlisted,
    /// `pendingApproval`: the organizer approves each registration.
    PendingApproval,
    /// `rejectedByOrganizer`.
    Rejected,
}

impl TeamsStatus {
    /// Every status, for parsing.
    const ALL: [Self; 5] = [Self::Registered, Self::Cancelled, Self::Waitlisted, Self::PendingApproval, Self::Rejected];

    /// Graph's word for it; `None` for one regsync does not know (Graph's
    /// `unknownFutureValue`).
    pub fn from_graph(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.graph().eq_ignore_ascii_case(word))
    }

    /// As Graph says it.
    pub fn graph(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Cancelled => "canceled",
            Self::Waitlisted => "waitlisted",
            Self::PendingApproval => "pendingApproval",
            Self::Rejected => "rejectedByOrganizer",
        }
    }

    /// As the platform is told it, and the store keeps it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Cancelled => "cancelled",
            Self::Waitlisted => "waitlisted",
            Self::PendingApproval => "pending_approval",
            Self::Rejected => "rejected",
        }
    }

    /// The registration ended in Teams: cancelled or rejected.
    pub fn is_ended(self) -> bool {
        matches!(self, Self::Cancelled | Self::Rejected)
    }

    /// The status a stored word names.
    pub fn from_str_stored(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == word)
    }
}

/// One answer to a registration question, as Graph takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionAnswer {
    /// The question's id at Graph.
    pub question_id: String,
    /// The answer, in the question's input type.
    pub value: AnswerValue,
}

/// An answer in a question's input type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerValue {
    /// `text`, `multilineText`, `singleChoice` and the predefined questions.
    Text(String),
    /// `boolean`.
    Boolean(bool),
    /// `multiChoice`.
    Choices(Vec<String>),
}

impl QuestionAnswer {
    /// Its `virtualEventRegistrationQuestionAnswer` JSON.
    pub fn to_graph(&self) -> serde_json::Value {
        let mut answer = serde_json::json!({"questionId": self.question_id});
        match &self.value {
            AnswerValue::Text(text) => answer["value"] = text.clone().into(),
            AnswerValue::Boolean(yes) => answer["booleanValue"] = (*yes).into(),
            AnswerValue::Choices(choices) => answer["multiChoiceValues"] = choices.clone().into(),
        }
        answer
    }
}

/// A registration question of an event, as Graph lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationQuestion {
    /// Its id, which an answer names.
    pub id: String,
    /// What the registration page shows.
    pub display_name: String,
    /// A predefined question's label (`jobTitle`, `city`, …).
    pub label: Option<String>,
    /// Whether Teams requires an answer.
    pub required: bool,
    /// How it is answered.
    pub input: AnswerInput,
    /// The choices of a single- or multi-choice question.
    pub choices: Vec<String>,
}

/// A question's `answerInputType` (predefined questions take text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerInput {
    /// `text` or `multilineText`.
    Text,
    /// `singleChoice`.
    SingleChoice,
    /// `multiChoice`.
    MultiChoice,
    /// `boolean`.
    Boolean,
}
