//! `regsync doctor`: every prerequisite of a working deployment, checked in
//! order, one line each with the fix when it fails. It reads: no call it
//! makes changes anything at Graph (a delegated sign-in may be refreshed,
//! which rotates its stored refresh token as any call would).

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::{GraphAuth, Settings};
use crate::domain::{EventKind, Location, Lookup, OnlineMeetingId, OrganizerId, VirtualEvent};
use crate::graph::{self, TokenClaims};
use crate::store;

/// A clock further off than this makes client assertions and tokens fail.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The join link the meetings check asks for: no meeting has it, so a
/// readable user answers an empty collection.
const PROBE_JOIN_URL: &str = "https://teams.microsoft.com/l/meetup-join/regsync-doctor-probe";

/// What to check against: a sample organizer and meeting, if given.
#[derive(Debug, Default, Clone)]
pub struct DoctorOptions {
    /// The organizer whose meetings are read (default: a signed-in one, or
    /// the first in the database).
    pub organizer: Option<String>,
    /// The online meeting whose registration is read (default: one of the
    /// organizer's in the database).
    pub meeting: Option<String>,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It holds; what was seen.
    Ok(String),
    /// It does not; what is wrong and the fix.
    Fail(String),
    /// It could not be checked; why.
    Skip(String),
}

/// The report: one line per check.
#[derive(Debug, Default)]
pub struct Report {
    /// Each check's name and verdict, in order.
    pub checks: Vec<(&'static str, Verdict)>,
}

impl Report {
    fn add(&mut self, name: &'static str, verdict: Verdict) {
        self.checks.push((name, verdict));
    }

    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.checks.iter().filter(|(_, v)| matches!(v, Verdict::Fail(_))).count()
    }

    /// The verdict of the check `name`.
    pub fn verdict(&self, name: &str) -> Option<&Verdict> {
        self.checks.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, verdict) in &self.checks {
            match verdict {
                Verdict::Ok(text) => writeln!(f, "ok    {name}: {text}")?,
                Verdict::Fail(text) => writeln!(f, "FAIL  {name}: {text}")?,
                Verdict::Skip(text) => writeln!(f, "skip  {name}: {text}")?,
            }
        }
        Ok(())
    }
}

/// Runs every check. Stops early only where the rest cannot run (no
/// configuration, no database, no token).
pub async fn doctor(config: Option<&Path>, options: DoctorOptions) -> Report {
    let mut report = Report::default();
    let settings = match Settings::load(config) {
        Ok(settings) => settings,
        Err(e) => {
            report.add("configuration", Verdict::Fail(format!("{e}")));
            return report;
        }
    };
    report.add("configuration", Verdict::Ok(format!("valid; graph.auth = {}", settings.graph.auth.as_str())));
    let Some(pool) = check_database(&settings, &mut report).await else { return report };
    let ctx = match super::context(
        std::sync::Arc::new(settings.clone()),
        pool.clone(),
        Default::default(),
        Default::default(),
    ) {
        Ok(ctx) => ctx,
        Err(e) => {
            report.add("token", Verdict::Fail(format!("{e:#}")));
            return report;
        }
    };
    let organizer = match sample_organizer(&settings, &pool, options.organizer.clone()).await {
        Ok(organizer) => organizer,
        Err(why) => {
            report.add("token", Verdict::Fail(why));
            return report;
        }
    };
    let permit = match ctx.permit(&organizer.clone().unwrap_or_else(|| OrganizerId(String::new()))).await {
        Ok(permit) => permit,
        Err(e) => {
            report.add("token", Verdict::Fail(e.to_string()));
            return report;
        }
    };
    let whose = organizer.as_ref().filter(|_| ctx.graph.is_delegated()).map(|o| format!(" for organizer {o}"));
    report.add(
        "token",
        Verdict::Ok(format!(
            "obtained with graph.auth = {}{}",
            settings.graph.auth.as_str(),
            whose.unwrap_or_default()
        )),
    );
    let claims = permit.claims().unwrap_or_default();
    report.add("permissions", permissions(&settings, &claims));
    report.add("audience", audience(&settings, &claims));
    let Some(organizer) = organizer else {
        report.add("meetings", Verdict::Skip("no organizer known yet: pass --organizer <object id>".into()));
        report.add("registration", Verdict::Skip("no meeting known yet: pass --meeting <online meeting id>".into()));
        report.add("clock", Verdict::Skip("no Graph answer to compare with".into()));
        return report;
    };
    let mut calls = Vec::new();
    // The sample online meeting (or webinar) the checks below read.
    let meeting = match options.meeting {
        Some(meeting) => Some(OnlineMeetingId(meeting)),
        None => store::meetings::sample_meeting(&pool, &organizer).await.ok().flatten(),
    };
    if let Some(kind) = settings.graph.target.event_kind() {
        let event = meeting.map(|m| VirtualEvent { kind, id: m.0 });
        if let Some(event) = &event {
            for (name, verdict) in super::doctor_events::event_checks(&ctx, &organizer, event, &mut calls).await {
                report.add(name, verdict);
            }
        }
        report.add("registration lookup", event_lookup(&ctx, &organizer, kind, event.as_ref(), &mut calls).await);
        report.add("clock", clock(&calls));
        return report;
    }
    let lookup = Lookup::Meeting { organizer: organizer.clone(), join_url: PROBE_JOIN_URL.into() };
    report.add(
        "meetings",
        match ctx.graph.resolve(permit, &lookup, &mut calls).await {
            Ok(_) => Verdict::Ok(format!("the online meetings of organizer {organizer} can be read")),
            Err(e) => Verdict::Fail(format!("cannot read the online meetings of organizer {organizer}: {e}")),
        },
    );
    match meeting {
        None => report.add(
            "registration",
            Verdict::Skip("no meeting of this organizer known: pass --meeting <online meeting id>".into()),
        ),
        Some(meeting) => {
            let at = Location { organizer: organizer.clone(), meeting };
            let verdict = match ctx.permit(&organizer).await {
                Err(e) => Verdict::Fail(e.to_string()),
                Ok(permit) => match ctx.graph.get(permit, &at, &mut calls).await {
                    Ok(Some(_)) => Verdict::Ok(format!("answers for meeting {}: registration enabled", at.meeting)),
                    Ok(None) => Verdict::Ok(format!("answers for meeting {}: no registration yet", at.meeting)),
                    Err(e @ graph::Error::Retired { .. }) => Verdict::Fail(format!(
                        "{e}. The beta registration API is retired or refuses this app: regsync cannot enable \
                         registration until it answers again"
                    )),
                    Err(e) => Verdict::Fail(format!("meeting {}: {e}", at.meeting)),
                },
            };
            report.add("registration", verdict);
        }
    }
    report.add("clock", clock(&calls));
    report
}

/// How a registration whose create answer was lost can be found: by e-mail
/// (a get, which the `.All` permissions allow) or by listing (documented
/// for resource-specific consent only). One of the two must work.
async fn event_lookup(
    ctx: &crate::sync::Ctx,
    organizer: &OrganizerId,
    kind: EventKind,
    event: Option<&VirtualEvent>,
    calls: &mut Vec<crate::domain::CallRecord>,
) -> Verdict {
    let Some(event) = event else {
        return Verdict::Skip(format!("no {} known yet: pass --meeting <{} id>", kind.noun(), kind.noun()));
    };
    let permit = match ctx.permit(organizer).await {
        Ok(permit) => permit,
        Err(e) => return Verdict::Fail(e.to_string()),
    };
    match ctx.graph.event_lookup_access(permit, event, calls).await {
        Err(e) => Verdict::Fail(format!("{event}: {e}")),
        Ok((Ok(()), _)) => Verdict::Ok(format!("{event}: a lost registration is found by e-mail")),
        Ok((Err(_), Ok(()))) => {
            Verdict::Ok(format!("{event}: a lost registration is found by listing (the get by e-mail is refused)"))
        }
        Ok((Err(get), Err(list))) => Verdict::Fail(format!(
            "{event}: regsync cannot look a registration up (get by e-mail: {get}; list: {list}). Grant \
             VirtualEvent.Read.All (or VirtualEventRegistration-Anon.ReadWrite.All) with admin consent, or \
             resource-specific consent VirtualEvent.Read.Chat, and the application access policy to the organizer"
        )),
    }
}

async fn check_database(settings: &Settings, report: &mut Report) -> Option<sqlx::PgPool> {
    let pool = match super::connect_migrated(settings).await {
        Ok(pool) => pool,
        Err(e) => {
            let text = format!("{e:#}");
            // A missing migration names its command already.
            let verdict = if text.contains("regsync migrate") {
                text
            } else {
                format!("{text}; check database.url, that PostgreSQL runs, and its sslmode/sslrootcert")
            };
            report.add("database", Verdict::Fail(verdict));
            return None;
        }
    };
    let asked = settings.database.requires_tls();
    match store::dashboard::connection_uses_tls(&pool).await {
        Ok(true) => report.add("database", Verdict::Ok("answers over TLS; migrations applied".into())),
        Ok(false) if asked => report.add(
            "database",
            Verdict::Fail("the connection is not encrypted although database.url asks for TLS".into()),
        ),
        Ok(false) => report.add(
            "database",
            Verdict::Ok(
                "answers (without TLS: add sslmode=verify-full to database.url to require it); migrations applied"
                    .into(),
            ),
        ),
        Err(e) => report.add("database", Verdict::Fail(e.to_string())),
    }
    Some(pool)
}

/// The organizer to check with: given, a signed-in one (delegated), or the
/// first the database knows.
async fn sample_organizer(
    settings: &Settings,
    pool: &sqlx::PgPool,
    given: Option<String>,
) -> Result<Option<OrganizerId>, String> {
    if let Some(organizer) = given {
        return Ok(Some(OrganizerId(organizer)));
    }
    if settings.graph.auth == GraphAuth::Delegated {
        let sign_ins = store::sign_ins::list(pool).await.map_err(|e| e.to_string())?;
        return match sign_ins.into_iter().next() {
            Some(s) => Ok(Some(OrganizerId(s.organizer_id))),
            None => Err("no organizer has signed in: run `regsync login` and sign in as an organizer".into()),
        };
    }
    store::meetings::sample_organizer(pool).await.map_err(|e| e.to_string())
}

/// The permissions this deployment needs, against the token's.
fn permissions(settings: &Settings, claims: &TokenClaims) -> Verdict {
    if settings.graph.auth == GraphAuth::Delegated {
        let granted: Vec<&str> = claims.scp.as_deref().unwrap_or_default().split(' ').collect();
        return if granted.iter().any(|s| s.eq_ignore_ascii_case("OnlineMeetings.ReadWrite")) {
            Verdict::Ok("delegated OnlineMeetings.ReadWrite granted".into())
        } else {
            Verdict::Fail(format!(
                "the sign-in lacks the delegated permission OnlineMeetings.ReadWrite (granted: {}): add it to the app \
                 under API permissions (Microsoft Graph, Delegated; \
                 https://learn.microsoft.com/graph/permissions-reference#onlinemeetingsreadwrite), then sign in again \
                 with `regsync login` to consent",
                claims.scp.as_deref().unwrap_or("none")
            ))
        };
    }
    super::doctor_events::app_permissions(settings, claims)
}

/// Tokens of one cloud are refused by another's Graph.
fn audience(settings: &Settings, claims: &TokenClaims) -> Verdict {
    /// Microsoft Graph's application id, the same in every cloud.
    const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
    let root = settings.graph.cloud.graph_root();
    match claims.aud.as_deref() {
        Some(aud) if aud.trim_end_matches('/') == root || aud == GRAPH_APP_ID => {
            Verdict::Ok(format!("the token is for {root} (graph.cloud = {})", settings.graph.cloud.as_str()))
        }
        Some(aud) => Verdict::Fail(format!(
            "the token is for {aud}, not {root} (graph.cloud = {}): set graph.cloud to the tenant's cloud, or \
             graph.authority_url and graph.scope to the same cloud as graph.base_url",
            settings.graph.cloud.as_str()
        )),
        None => Verdict::Skip("the token is not a JWT regsync can read".into()),
    }
}

/// This machine's clock against Graph's `Date`.
fn clock(calls: &[crate::domain::CallRecord]) -> Verdict {
    let Some(date) = calls.iter().rev().find_map(|c| c.response_date.as_deref()) else {
        return Verdict::Skip("Graph sent no Date header".into());
    };
    let Ok(graph_time) = httpdate::parse_http_date(date) else {
        return Verdict::Skip(format!("Graph's Date header {date:?} is not an HTTP date"));
    };
    let now = SystemTime::now();
    let (skew, ahead) = match graph_time.duration_since(now) {
        Ok(d) => (d, "behind"),
        Err(e) => (e.duration(), "ahead of"),
    };
    if skew > MAX_CLOCK_SKEW {
        Verdict::Fail(format!(
            "this machine's clock is {} s {ahead} Graph's: sync it (NTP); assertions and tokens fail beyond {} s",
            skew.as_secs(),
            MAX_CLOCK_SKEW.as_secs()
        ))
    } else {
        Verdict::Ok(format!("within {} s of Graph's", skew.as_secs().max(1)))
    }
}
