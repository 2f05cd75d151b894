//! `regsync doctor` for the v1.0 successor and the features beside
//! registration: the application permission each enabled feature needs,
//! and, for a sample webinar or town hall, that it is published, how it
//! takes registrations, that a lost registration can be looked up, that
//! this app may cancel, and that its attendance can be read. One line each,
//! with the fix.

use super::doctor::Verdict;
use crate::config::Settings;
use crate::domain::{CallRecord, OrganizerId, VirtualEvent};
use crate::graph::{self, AttendanceAt, TokenClaims};
use crate::sync::Ctx;

/// The application permissions this deployment's features need, each with
/// the feature that needs it.
pub(super) fn needed_roles(settings: &Settings) -> Vec<(&'static str, &'static str)> {
    let mut needed = Vec::new();
    if settings.graph.target.event_kind().is_some() {
        needed.push(("VirtualEventRegistration-Anon.ReadWrite.All", "registrations"));
        if !settings.registrants.answers.is_empty() {
            needed.push(("VirtualEvent.Read.All", "registration questions"));
        }
        if settings.registrants.status_readback_secs > 0 || !settings.notifications.public_url.is_empty() {
            needed.push(("VirtualEvent.Read.All", "status read-back"));
        }
    } else {
        needed.push(("OnlineMeetings.ReadWrite.All", "registrations"));
    }
    if !settings.source.fields.organizer_upn.is_empty() {
        needed.push(("User.Read.All", "organizer e-mails"));
    }
    if settings.attendance.enabled {
        needed.push(("OnlineMeetingArtifact.Read.All", "attendance"));
    }
    needed.dedup_by_key(|(role, _)| *role);
    needed
}

/// The token's application permissions against [`needed_roles`].
pub(super) fn app_permissions(settings: &Settings, claims: &TokenClaims) -> Verdict {
    let has = |role: &str| {
        claims.roles.iter().any(|r| r.eq_ignore_ascii_case(role))
            // The broader user permission covers the basic one.
            || (role == "User.Read.All" && claims.roles.iter().any(|r| r.eq_ignore_ascii_case("User.ReadBasic.All")))
    };
    let missing: Vec<String> = needed_roles(settings)
        .into_iter()
        .filter(|(role, _)| !has(role))
        .map(|(r, why)| format!("{r} ({why})"))
        .collect();
    if missing.is_empty() {
        Verdict::Ok(format!("application permissions {}", claims.roles.join(", ")))
    } else {
        Verdict::Fail(format!(
            "the app's token lacks the application permission(s) {}: add them under API permissions (Microsoft \
             Graph, Application; https://learn.microsoft.com/graph/permissions-reference) and have an admin grant \
             consent",
            missing.join(", ")
        ))
    }
}

/// Why a read of the sample event was refused, with the fix.
fn refused(event: &VirtualEvent, organizer: &OrganizerId, e: &graph::Error) -> String {
    match e {
        graph::Error::Rejected { status: 403, .. } => format!(
            "{event}: {e} Grant the app an application access policy for organizer {organizer} \
             (New-CsApplicationAccessPolicy, Grant-CsApplicationAccessPolicy) and the permission above"
        ),
        e => format!("{event}: {e}"),
    }
}

/// The checks of a sample webinar or town hall, in order.
pub(super) async fn event_checks(
    ctx: &Ctx,
    organizer: &OrganizerId,
    event: &VirtualEvent,
    calls: &mut Vec<CallRecord>,
) -> Vec<(&'static str, Verdict)> {
    let mut checks = Vec::new();
    let permit = || async { ctx.permit(organizer).await.map_err(|e| e.to_string()) };
    let published = match permit().await {
        Err(e) => Verdict::Fail(e),
        Ok(p) => match ctx.graph.event_status(p, event, calls).await {
            Ok(s) if s.eq_ignore_ascii_case("published") => Verdict::Ok(format!("{event} is published")),
            Ok(s) => Verdict::Fail(format!(
                "{event} is {s:?}: registrations made before it is published never arrive; publish it in Teams"
            )),
            Err(e) => Verdict::Fail(refused(event, organizer, &e)),
        },
    };
    checks.push(("event", published));
    let configuration = match permit().await {
        Err(e) => Verdict::Fail(e),
        Ok(p) => match ctx.graph.registration_configuration(p, event, calls).await {
            Ok(c) => Verdict::Ok(format!(
                "{event}: capacity {}, waitlist {}, manual approval {} — Teams answers registrations as {}",
                c.capacity.map_or("unlimited".into(), |n| n.to_string()),
                if c.waitlist { "on" } else { "off" },
                if c.manual_approval { "on" } else { "off" },
                match (c.manual_approval, c.waitlist) {
                    (true, _) => "pendingApproval until the organizer decides",
                    (false, true) => "registered, then waitlisted once full",
                    (false, false) => "registered",
                }
            )),
            Err(e) => Verdict::Fail(refused(event, organizer, &e)),
        },
    };
    checks.push(("registration configuration", configuration));
    // A cancel of a registration no one has: 404 says this app may cancel.
    let cancel = match permit().await {
        Err(e) => Verdict::Fail(e),
        Ok(p) => match ctx.graph.cancel_event_registration(p, event, "regsync-doctor-probe", calls).await {
            Ok(_) => Verdict::Ok(format!("{event}: this app may cancel registrations")),
            Err(e @ graph::Error::Rejected { status: 403, .. }) => Verdict::Fail(format!(
                "{event}: this app may not cancel registrations ({e}): a registrant cancelled on the platform stays \
                 registered in Teams. Grant VirtualEventRegistration-Anon.ReadWrite.Chat by resource-specific \
                 consent, or cancel in Teams"
            )),
            Err(e) => Verdict::Fail(refused(event, organizer, &e)),
        },
    };
    checks.push(("cancel", cancel));
    if ctx.settings.attendance.enabled {
        let attendance = match permit().await {
            Err(e) => Verdict::Fail(e),
            Ok(p) => match ctx.graph.attendance(p, &AttendanceAt::Event(event.clone()), calls).await {
                Ok(Some(records)) => Verdict::Ok(format!("{event}: a report with {} records", records.len())),
                Ok(None) => Verdict::Ok(format!("{event}: attendance readable (no report yet)")),
                Err(e) => Verdict::Fail(refused(event, organizer, &e)),
            },
        };
        checks.push(("attendance", attendance));
    }
    checks
}
