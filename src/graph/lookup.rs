//! Looking up Graph's ids from what platforms hold: a user by UPN
//! (`GET /users/{upn}?$select=id`) and an online meeting by its join link
//! (`GET /users/{organizer}/onlineMeetings?$filter=JoinWebUrl eq '…'`).
//! Both go through the same permit, audit and classification as the
//! registration calls.

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use serde::Deserialize;

use super::answer::{absent_on_404, mark_last, unexpected};
use super::client::SEGMENT;
use super::{Client, Error, Permit};
use crate::domain::{CallRecord, Lookup};

/// A user or a meeting, of which regsync reads only the id (`$select=id`
/// keeps a user to it).
#[derive(Deserialize)]
struct Found {
    id: String,
}

/// A meeting the `$filter` answers, with the join link it has.
#[derive(Deserialize)]
struct FoundMeeting {
    id: String,
    #[serde(rename = "joinWebUrl", default)]
    join_web_url: Option<String>,
}

/// The collection the `$filter` answers: one meeting, or none.
#[derive(Deserialize)]
struct Collection {
    value: Vec<FoundMeeting>,
}

impl Client {
    /// The Graph id `lookup` names; `None` when Graph has no such user or
    /// meeting.
    ///
    /// # Errors
    /// Classified failures; a 403 says which permission the lookup needs.
    pub async fn resolve(
        &self,
        permit: Permit,
        lookup: &Lookup,
        calls: &mut Vec<CallRecord>,
    ) -> Result<Option<String>, Error> {
        let answer = match self.send(permit, Method::GET, path(lookup), None, calls).await {
            Err(Error::Rejected { status: 403, code, message, .. }) => {
                return Err(Error::Rejected { status: 403, code, message, hint: permission_hint(lookup) })
            }
            answer => absent_on_404(answer, calls)?,
        };
        let Some((status, bytes)) = answer else { return Ok(None) };
        let found = match lookup {
            Lookup::Organizer { .. } => serde_json::from_slice::<Found>(&bytes).map(|user| Some(user.id)),
            // The filter has been seen to answer other meetings: only the
            // one whose join link is the one asked for counts.
            Lookup::Meeting { join_url, .. } => serde_json::from_slice::<Collection>(&bytes).map(|m| {
                m.value.into_iter().find(|m| m.join_web_url.as_deref() == Some(join_url.as_str())).map(|m| m.id)
            }),
        }
        .map_err(|e| unexpected(status, &e.to_string()))?;
        match found {
            Some(id) if id.is_empty() => Err(unexpected(status, "the answer has an empty id")),
            None => {
                mark_last(calls, "absent");
                Ok(None)
            }
            found => Ok(found),
        }
    }
}

/// The request path and query of `lookup`.
fn path(lookup: &Lookup) -> String {
    match lookup {
        Lookup::Organizer { upn } => format!("/users/{}?$select=id", utf8_percent_encode(upn, SEGMENT)),
        Lookup::Meeting { organizer, join_url } => {
            // An OData string literal doubles its quotes; the whole filter
            // is then one percent-encoded query value.
            let filter = format!("JoinWebUrl eq '{}'", join_url.replace('\'', "''"));
            format!(
                "/users/{}/onlineMeetings?$filter={}&$select=id,joinWebUrl",
                utf8_percent_encode(organizer.as_str(), SEGMENT),
                utf8_percent_encode(&filter, NON_ALPHANUMERIC)
            )
        }
    }
}

/// What an operator grants when a lookup is refused.
fn permission_hint(lookup: &Lookup) -> String {
    match lookup {
        Lookup::Organizer { .. } => {
            "Reading users needs the application permission User.Read.All (or User.ReadBasic.All) \
             with admin consent"
                .into()
        }
        Lookup::Meeting { .. } => {
            "Reading the organizer's online meetings needs OnlineMeetings.Read.All (or .ReadWrite.All) \
             with admin consent and the application access policy granted to the organizer \
             (Grant-CsApplicationAccessPolicy -PolicyName <policy> -Identity <organizer id>)"
                .into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OrganizerId;

    #[test]
    fn a_join_link_is_one_encoded_odata_literal() {
        let lookup = Lookup::Meeting {
            organizer: OrganizerId("o-1".into()),
            join_url: "https://teams.example/l/meetup-join/19%3ameeting_x%40thread.v2/0?context=it's".into(),
        };
        assert_eq!(
            path(&lookup),
            "/users/o-1/onlineMeetings?$filter=JoinWebUrl%20eq%20%27https%3A%2F%2Fteams%2Eexample%2Fl%2Fmeetup%2Djoin\
             %2F19%253ameeting%5Fx%2540thread%2Ev2%2F0%3Fcontext%3Dit%27%27s%27&$select=id,joinWebUrl"
        );
    }

    #[test]
    fn a_upn_is_one_path_segment() {
        let lookup = Lookup::Organizer { upn: "a/b@contoso.example".into() };
        assert_eq!(path(&lookup), "/users/a%2Fb%40contoso.example?$select=id");
    }
}
