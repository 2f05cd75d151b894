//! The answers a registration sends, pure: each of the event's questions is
//! answered from the registrant's mapped values (`registrants.answers.<name>`,
//! matched to a question's display name or predefined label, case and
//! surrounding space ignored), in the question's input type. A required
//! question left unanswered, or an answer Teams cannot take, is the
//! registrant's reason to fail, naming the question.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::domain::{AnswerInput, AnswerValue, QuestionAnswer, RegistrationQuestion};

/// The answers to `questions` from `given` (configured name → the value
/// the registrant item holds there).
///
/// # Errors
/// Why the registration cannot be sent, naming the question.
pub fn answers(
    questions: &[RegistrationQuestion],
    given: &BTreeMap<String, Value>,
) -> Result<Vec<QuestionAnswer>, String> {
    let mut answers = Vec::new();
    for q in questions {
        let names = std::iter::once(q.display_name.as_str()).chain(q.label.as_deref());
        let value = names
            .flat_map(|name| given.iter().filter(move |(key, _)| key.trim().eq_ignore_ascii_case(name.trim())))
            .map(|(_, value)| value)
            .find(|value| !is_blank(value));
        let Some(value) = value else {
            if q.required {
                return Err(format!(
                    "registration question {:?} requires an answer and the registrant has none: map it with \
                     registrants.answers.\"{}\" or give the registrant a value there",
                    q.display_name, q.display_name
                ));
            }
            continue;
        };
        let value = typed(q, value).map_err(|why| format!("registration question {:?}: {why}", q.display_name))?;
        answers.push(QuestionAnswer { question_id: q.id.clone(), value });
    }
    Ok(answers)
}

/// No answer: absent, null, an empty string or list.
fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

/// `value` as question `q` takes it.
fn typed(q: &RegistrationQuestion, value: &Value) -> Result<AnswerValue, String> {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    let choice = |answer: String| match q.choices.iter().find(|c| c.trim().eq_ignore_ascii_case(&answer)) {
        Some(choice) => Ok(choice.clone()),
        None => Err(format!("{answer:?} is not one of its choices {:?}", q.choices)),
    };
    match q.input {
        AnswerInput::Text => text(value).map(AnswerValue::Text).ok_or_else(|| format!("{value} is not text")),
        AnswerInput::SingleChoice => {
            let answer = text(value).ok_or_else(|| format!("{value} is not one choice"))?;
            Ok(AnswerValue::Text(choice(answer)?))
        }
        AnswerInput::MultiChoice => {
            let picked: Vec<String> = match value {
                Value::Array(items) => items
                    .iter()
                    .map(|i| text(i).ok_or_else(|| format!("{i} is not a choice")))
                    .collect::<Result<_, _>>()?,
                // A platform that keeps several choices in one field.
                other => {
                    let joined = text(other).ok_or_else(|| format!("{other} is not a list of choices"))?;
                    joined.split([',', ';']).map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect()
                }
            };
            Ok(AnswerValue::Choices(picked.into_iter().map(choice).collect::<Result<_, _>>()?))
        }
        AnswerInput::Boolean => match value {
            Value::Bool(b) => Ok(AnswerValue::Boolean(*b)),
            other => match text(other).map(|t| t.to_lowercase()).as_deref() {
                Some("true" | "yes" | "y" | "1") => Ok(AnswerValue::Boolean(true)),
                Some("false" | "no" | "n" | "0") => Ok(AnswerValue::Boolean(false)),
                _ => Err(format!("{other} is not yes or no")),
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn question(name: &str, input: AnswerInput, required: bool, choices: &[&str]) -> RegistrationQuestion {
        RegistrationQuestion {
            id: format!("q-{name}"),
            display_name: name.into(),
            label: None,
            required,
            input,
            choices: choices.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn given(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    #[test]
    fn each_question_is_answered_in_its_type_and_matched_by_name_or_label() {
        let mut job = question("Job title", AnswerInput::Text, true, &[]);
        job.label = Some("jobTitle".into());
        let questions = [
            job,
            question("Track", AnswerInput::SingleChoice, false, &["Developer", "Operator"]),
            question("Topics", AnswerInput::MultiChoice, false, &["Rust", "Graph", "Teams"]),
            question("Consent", AnswerInput::Boolean, true, &[]),
            question("Unmapped", AnswerInput::Text, false, &[]),
        ];
        let values = given(&[
            ("jobtitle", json!("Engineer")),
            ("track", json!("operator")),
            ("Topics", json!("rust, teams")),
            ("consent", json!("yes")),
        ]);
        let sent = answers(&questions, &values).expect("every required question is answered");
        let by_id: BTreeMap<_, _> = sent.into_iter().map(|a| (a.question_id, a.value)).collect();
        assert_eq!(by_id["q-Job title"], AnswerValue::Text("Engineer".into()));
        assert_eq!(by_id["q-Track"], AnswerValue::Text("Operator".into()));
        assert_eq!(by_id["q-Topics"], AnswerValue::Choices(vec!["Rust".into(), "Teams".into()]));
        assert_eq!(by_id["q-Consent"], AnswerValue::Boolean(true));
        assert!(!by_id.contains_key("q-Unmapped"), "an optional question without a value is left out");
    }

    #[test]
    fn a_required_question_without_an_answer_or_a_choice_teams_lacks_names_the_question() {
        let questions = [question("Company", AnswerInput::Text, true, &[])];
        let why = answers(&questions, &given(&[("company", json!("  "))])).expect_err("a blank answer is none");
        assert!(why.contains("\"Company\" requires an answer"), "{why}");
        let questions = [question("Track", AnswerInput::SingleChoice, true, &["Developer"])];
        let why = answers(&questions, &given(&[("Track", json!("Manager"))])).expect_err("not a choice");
        assert!(why.contains("\"Track\"") && why.contains("not one of its choices"), "{why}");
    }
}
