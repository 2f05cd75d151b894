//! Graph's and the identity platform's JSON, as Microsoft documents them
//! (the pages are linked in `client.rs` and `auth.rs`). Nothing here leaves
//! the `graph` module.

use serde::{Deserialize, Deserializer, Serialize};

/// The `@odata.type` of the registration regsync creates and owns.
pub const EXTERNAL_REGISTRATION_TYPE: &str = "#microsoft.graph.externalMeetingRegistration";

/// Body of `POST .../registration`.
#[derive(Debug, Serialize)]
pub struct CreateRegistration<'a> {
    /// Required: without it Graph answers 400 BadRequest.
    #[serde(rename = "@odata.type")]
    pub odata_type: &'a str,
    /// `everyone` or `organization`.
    #[serde(rename = "allowedRegistrant")]
    pub allowed_registrant: &'a str,
}

/// A registration as Graph returns it from create and get.
#[derive(Debug, Deserialize)]
pub struct Registration {
    /// `#microsoft.graph.externalMeetingRegistration` or Teams' own
    /// `#microsoft.graph.meetingRegistration`.
    #[serde(rename = "@odata.type", default)]
    pub odata_type: Option<String>,
    /// The registration id.
    pub id: String,
    /// The audience.
    #[serde(rename = "allowedRegistrant", default)]
    pub allowed_registrant: Option<String>,
}

/// Graph's OData error body: `{"error":{"code":...,"message":...}}`.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// The error object.
    pub error: ErrorDetail,
}

/// The error object; only `code` is for branching.
#[derive(Debug, Deserialize)]
pub struct ErrorDetail {
    /// Machine-readable code (case varies: `Forbidden`, `itemNotFound`).
    #[serde(default)]
    pub code: Option<String>,
    /// Developer text, logged and shown, never branched on.
    #[serde(default)]
    pub message: Option<String>,
    /// `request-id`, `client-request-id`, `date` and nested codes, which
    /// Microsoft support asks for; kept as it came.
    #[serde(rename = "innerError", default)]
    pub inner_error: Option<serde_json::Value>,
}

/// A successful token response (any grant). Never `Debug`: it holds tokens.
#[derive(Deserialize)]
pub struct TokenResponse {
    /// The bearer token.
    pub access_token: String,
    /// Lifetime in seconds; some token sources send it as a string.
    #[serde(deserialize_with = "lenient_whole_secs")]
    pub expires_in: u64,
    /// With `offline_access` (delegated): the next refresh token, which
    /// replaces the one just used.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// With `openid` (delegated): who signed in.
    #[serde(default)]
    pub id_token: Option<String>,
    /// The delegated permissions granted.
    #[serde(default)]
    pub scope: Option<String>,
}

/// The identity platform's error body.
#[derive(Debug, Deserialize)]
pub struct TokenError {
    /// `invalid_client`, `invalid_request`, ... (branch on this).
    #[serde(default)]
    pub error: Option<String>,
    /// `AADSTS...: text\r\nTrace ID: ...`.
    #[serde(default)]
    pub error_description: Option<String>,
    /// The AADSTS numbers.
    #[serde(default)]
    pub error_codes: Vec<u64>,
    /// For Microsoft support.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// For Microsoft support.
    #[serde(default)]
    pub correlation_id: Option<String>,
}

impl TokenError {
    /// `error codes …, trace id …, correlation id …` for logs and errors.
    pub fn support_ids(&self) -> String {
        let mut parts = Vec::new();
        if !self.error_codes.is_empty() {
            let codes: Vec<String> = self.error_codes.iter().map(u64::to_string).collect();
            parts.push(format!("error codes {}", codes.join(", ")));
        }
        if let Some(id) = &self.trace_id {
            parts.push(format!("trace id {id}"));
        }
        if let Some(id) = &self.correlation_id {
            parts.push(format!("correlation id {id}"));
        }
        parts.join(", ")
    }
}

fn lenient_whole_secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    crate::http::lenient_secs(d).map(|lifetime| lifetime.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_may_be_a_number_or_a_string() {
        let a: TokenResponse = serde_json::from_str(r#"{"access_token":"t","expires_in":3599}"#).unwrap();
        let b: TokenResponse =
            serde_json::from_str(r#"{"access_token":"t","expires_in":"3599","ext_expires_in":"3599"}"#).unwrap();
        assert_eq!(a.expires_in, 3599);
        assert_eq!(b.expires_in, 3599);
    }

    #[test]
    fn the_create_body_carries_the_odata_type() {
        let body = serde_json::to_value(CreateRegistration {
            odata_type: EXTERNAL_REGISTRATION_TYPE,
            allowed_registrant: "everyone",
        })
        .unwrap();
        assert_eq!(body["@odata.type"], "#microsoft.graph.externalMeetingRegistration");
        assert_eq!(body["allowedRegistrant"], "everyone");
    }
}
