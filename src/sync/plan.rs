//! The state machine of one meeting, without effects: from what the claim
//! and the answers so far say, the next step; from each answer, what is now
//! progress. `reconcile` carries the steps out.

use crate::domain::{Actual, Desired, Location, RemoteRegistration};
use crate::store::Claimed;

/// The next thing to do for a meeting, from what is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Plan {
    Done,
    Lookup(Location),
    Create(Location),
    Delete(Location),
    Fail(String),
}

/// What the engine knows while it works on one meeting.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    pub(super) actual: Option<Actual>,
    pub(super) needs_lookup: bool,
    pub(super) lookup_at: Option<Location>,
    /// A registration of another kind sits where ours should go.
    pub(super) foreign_at: Option<(Location, String)>,
    /// Graph answered 409 to this reconcile's create.
    pub(super) conflicted: bool,
    pub(super) attempts: i32,
    pub(super) created: bool,
    pub(super) deleted: bool,
    /// Graph answered about the registration in this reconcile.
    pub(super) checked: bool,
    /// A write of this reconcile ended with its outcome unknown: Graph may
    /// still act on it, so its lookup waits for the request timeout.
    pub(super) write_unsettled: bool,
}

impl Progress {
    /// What the claim says, before any call.
    pub(super) fn from_claim(c: &Claimed) -> Self {
        Self {
            actual: c.actual.clone(),
            needs_lookup: c.claim.needs_lookup,
            lookup_at: c.lookup_at.clone(),
            foreign_at: None,
            conflicted: false,
            attempts: c.claim.attempts,
            created: false,
            deleted: false,
            checked: false,
            write_unsettled: false,
        }
    }
}

/// Model step \[S2\] (model/exactly_once.pml); the look at a meeting first met cancelled is
/// [S11].
///
/// The next step for a claimed meeting, given what is known so far.
pub(super) fn plan(c: &Claimed, k: &Progress) -> Plan {
    if k.needs_lookup {
        let at = k.lookup_at.clone().or_else(|| k.actual.as_ref().map(|a| a.location.clone()));
        return Plan::Lookup(at.unwrap_or_else(|| c.location.clone()));
    }
    match (c.desired, &k.actual) {
        (Desired::Registered, Some(a))
            if a.location == c.location && a.audience.is_none_or(|aud| aud == c.allowed_registrant) =>
        {
            Plan::Done
        }
        // Wrong audience (Graph cannot update it in place) or a moved meeting.
        (_, Some(a)) => Plan::Delete(a.location.clone()),
        (Desired::Registered, None) => match &k.foreign_at {
            Some((at, odata_type)) if *at == c.location => Plan::Fail(format!(
                "the meeting already has a registration of another kind ({odata_type}), which regsync never removes; \
                 turn off the meeting's Teams registration, then run `regsync retry {}`",
                c.external_id
            )),
            _ => Plan::Create(c.location.clone()),
        },
        // A registration regsync never made (an earlier deployment, a
        // restored database, another tool) may be there: look once.
        (Desired::Unregistered, None) if !c.graph_checked && !k.checked && k.foreign_at.is_none() => {
            Plan::Lookup(c.location.clone())
        }
        (Desired::Unregistered, None) => Plan::Done,
    }
}

/// Model step \[S6\] (model/exactly_once.pml), with [`after_create`].
///
/// What a lookup's answer teaches.
pub(super) fn after_lookup(progress: &mut Progress, at: &Location, found: Option<RemoteRegistration>) {
    progress.needs_lookup = false;
    progress.checked = true;
    progress.actual = match found {
        Some(RemoteRegistration::External { id, allowed_registrant }) => {
            tracing::info!(registration_id = %id, "found the registration at Graph; adopting it");
            Some(Actual { registration_id: id, location: at.clone(), audience: allowed_registrant })
        }
        Some(RemoteRegistration::Foreign { odata_type }) => {
            progress.foreign_at = Some((at.clone(), odata_type));
            None
        }
        None => None,
    };
}

/// What a delete's answer teaches: nothing is there now.
pub(super) fn after_delete(progress: &mut Progress, removed: bool) {
    progress.actual = None;
    progress.needs_lookup = false;
    progress.checked = true;
    progress.deleted |= removed;
}

/// What a create's answer teaches.
pub(super) fn after_create(progress: &mut Progress, at: &Location, made: RemoteRegistration, claimed: &Claimed) {
    progress.needs_lookup = false;
    progress.checked = true;
    match made {
        RemoteRegistration::External { id, allowed_registrant } => {
            tracing::info!(registration_id = %id, "registration created");
            progress.created = true;
            progress.actual = Some(Actual {
                registration_id: id,
                location: at.clone(),
                audience: allowed_registrant.or(Some(claimed.allowed_registrant)),
            });
        }
        RemoteRegistration::Foreign { odata_type } => progress.foreign_at = Some((at.clone(), odata_type)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AllowedRegistrant, ExternalId, OnlineMeetingId, OrganizerId, RegistrationId};

    fn loc(m: &str) -> Location {
        Location { organizer: OrganizerId("org".into()), meeting: OnlineMeetingId(m.into()) }
    }

    fn claimed(desired: Desired, allowed: AllowedRegistrant) -> Claimed {
        Claimed {
            claim: crate::store::claims::Claim {
                lease: crate::store::claims::Lease { row: 1, token: uuid::Uuid::nil() },
                attempts: 0,
                needs_lookup: false,
            },
            external_id: ExternalId("evt".into()),
            desired,
            location: loc("m1"),
            organizer_upn: None,
            join_url: None,
            allowed_registrant: allowed,
            actual: None,
            lookup_at: None,
            graph_checked: true,
        }
    }

    fn progress(actual: Option<Actual>) -> Progress {
        Progress { actual, ..Progress::from_claim(&claimed(Desired::Registered, AllowedRegistrant::Everyone)) }
    }

    fn registered_at(m: &str, audience: AllowedRegistrant) -> Option<Actual> {
        Some(Actual { registration_id: RegistrationId("r".into()), location: loc(m), audience: Some(audience) })
    }

    use AllowedRegistrant::{Everyone, Organization};

    #[test]
    fn a_new_meeting_is_created_and_a_registered_one_left_alone() {
        assert_eq!(plan(&claimed(Desired::Registered, Everyone), &progress(None)), Plan::Create(loc("m1")));
        assert_eq!(plan(&claimed(Desired::Registered, Everyone), &progress(registered_at("m1", Everyone))), Plan::Done);
    }

    #[test]
    fn an_unknown_outcome_is_looked_up_where_the_write_went_before_anything_else() {
        let mut k = progress(registered_at("m1", Everyone));
        k.needs_lookup = true;
        k.lookup_at = Some(loc("m0"));
        assert_eq!(plan(&claimed(Desired::Registered, Everyone), &k), Plan::Lookup(loc("m0")));
    }

    #[test]
    fn an_audience_change_or_a_moved_meeting_deletes_first() {
        let c = claimed(Desired::Registered, Organization);
        assert_eq!(plan(&c, &progress(registered_at("m1", Everyone))), Plan::Delete(loc("m1")));
        assert_eq!(plan(&c, &progress(registered_at("m0", Organization))), Plan::Delete(loc("m0")));
    }

    #[test]
    fn a_cancelled_meeting_is_deleted_once() {
        let c = claimed(Desired::Unregistered, Everyone);
        assert_eq!(plan(&c, &progress(registered_at("m1", Everyone))), Plan::Delete(loc("m1")));
        assert_eq!(plan(&c, &progress(None)), Plan::Done);
    }

    #[test]
    fn a_meeting_first_met_cancelled_is_looked_up_once_and_nothing_of_another_kind_is_touched() {
        let mut c = claimed(Desired::Unregistered, Everyone);
        c.graph_checked = false;
        assert_eq!(plan(&c, &progress(None)), Plan::Lookup(loc("m1")));
        let mut k = progress(None);
        after_lookup(&mut k, &loc("m1"), None);
        assert_eq!(plan(&c, &k), Plan::Done);
        let mut k = progress(None);
        after_lookup(&mut k, &loc("m1"), Some(RemoteRegistration::Foreign { odata_type: "x".into() }));
        assert_eq!(plan(&c, &k), Plan::Done);
    }

    #[test]
    fn a_foreign_registration_is_never_replaced() {
        let mut k = progress(None);
        k.foreign_at = Some((loc("m1"), "#microsoft.graph.meetingRegistration".into()));
        assert!(matches!(plan(&claimed(Desired::Registered, Everyone), &k), Plan::Fail(_)));
    }
}
