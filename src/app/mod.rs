//! Wiring: builds the pool, the clients and the engine context from
//! `Settings`, and implements each command. The one place that sees every
//! module.

mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
#[cfg(feature = "demo")]
mod demo_successor;
pub mod doctor;
mod doctor_events;

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{GraphAuth, Settings};
use crate::metrics::Metrics;
use crate::sealed::Sealer;
use crate::sync::{self, Ctx, TickReport};
use crate::{graph, source, store};

pub use daemon::run;

/// Opens the pool and applies pending migrations (safe from several replicas
/// at once: sqlx serialises them with an advisory lock) — or, with
/// `database.migrate = false`, checks that they have been applied.
///
/// # Errors
/// The database is unreachable, a migration failed or is missing.
pub async fn connect_and_migrate(settings: &Settings) -> anyhow::Result<PgPool> {
    if !settings.database.migrate {
        return connect_migrated(settings).await;
    }
    let pool = store::connect(&settings.database)?;
    store::migrate(&pool).await.context("cannot prepare the database (is it running and is database.url right?)")?;
    Ok(pool)
}

/// Opens the pool of a database that must already be migrated; writes
/// nothing.
///
/// # Errors
/// The database is unreachable or lacks a migration.
pub async fn connect_migrated(settings: &Settings) -> anyhow::Result<PgPool> {
    let pool = store::connect(&settings.database)?;
    store::check_migrated(&pool).await.context("cannot use the database (is it running and is database.url right?)")?;
    Ok(pool)
}

/// Builds the engine context.
///
/// # Errors
/// A client cannot be built from the settings.
pub fn context(
    settings: Arc<Settings>,
    pool: PgPool,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<Ctx>> {
    let source = source::Client::new(
        &settings.source,
        settings.default_allowed_registrant(),
        settings.graph.target.event_kind(),
    )?;
    let graph = graph::Client::new(&settings.graph)?;
    let sealer = sealer(&settings)?;
    let ctx = Ctx::new(pool, source, graph, settings, metrics, shutdown);
    Ok(Arc::new(match sealer {
        Some(sealer) => {
            // A refresh may take the token request's timeout; its lease
            // outlives that by as much again.
            let refresh_lease = ctx.settings.graph.timeout() * 2;
            ctx.with_sign_ins(sync::sign_ins::SignIns::new(sealer, refresh_lease))
        }
        None => ctx,
    }))
}

/// The sealer of sign-ins, with delegated sign-in.
fn sealer(settings: &Settings) -> anyhow::Result<Option<Sealer>> {
    if settings.graph.auth != GraphAuth::Delegated {
        return Ok(None);
    }
    let key = settings.security.encryption_key.as_ref().context("security.encryption_key is required")?;
    Ok(Some(Sealer::new(key)?))
}

/// `regsync migrate`.
///
/// # Errors
/// As [`connect_and_migrate`].
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    connect_and_migrate(settings).await?;
    Ok(())
}

/// `regsync once`: one poll, then reconcile until nothing is due now.
///
/// # Errors
/// The cycle could not run: database unreachable, or Graph credentials
/// refused (the report is still recorded in `ops.sync_runs`).
pub async fn once(settings: Settings) -> anyhow::Result<TickReport> {
    let pool = connect_and_migrate(&settings).await?;
    let ctx = context(Arc::new(settings), pool, Arc::default(), CancellationToken::new())?;
    let report = sync::tick(&ctx).await?;
    if let Some(error) = &report.error {
        anyhow::bail!("the cycle could not call Graph: {error}");
    }
    // What a deployment that runs `once` on its own schedule needs too.
    sync::follow_ups(&ctx).await;
    sync::reconcile_due(&ctx).await?;
    Ok(report)
}

/// `regsync status`: meetings per state and the latest failures.
///
/// # Errors
/// The database is unreachable.
pub async fn status(settings: &Settings) -> anyhow::Result<String> {
    let pool = connect_migrated(settings).await?;
    let mut out = String::from("meetings by state:\n");
    for s in store::meetings::count_by_state(&pool).await? {
        let _ = writeln!(out, "  {:<10} {}", s.state.as_str(), s.count);
    }
    match store::runs::last_poll_at(&pool).await? {
        Some(at) => {
            let _ = writeln!(out, "last poll finished: {at}");
        }
        None => out.push_str("no poll has finished yet\n"),
    }
    let people = store::registrants::count_by_state(&pool).await?;
    if !people.is_empty() {
        out.push_str("registrants by state:\n");
        for s in people {
            let _ = writeln!(out, "  {:<10} {}", s.state.as_str(), s.count);
        }
    }
    let sign_ins = store::sign_ins::list(&pool).await?;
    if !sign_ins.is_empty() {
        out.push_str("signed-in organizers:\n");
        for s in sign_ins {
            let state = match &s.revoked_reason {
                None => "usable".to_owned(),
                Some(reason) => format!("must sign in again: {reason}"),
            };
            let _ = writeln!(out, "  {} ({}): {state}", s.organizer_id, s.upn.unwrap_or_default());
        }
    }
    if let Some(reason) = store::throttle::suspension(&pool).await? {
        let _ = writeln!(out, "Graph writes are suspended for the deployment: {reason}");
    }
    let failures = store::meetings::recent_failures(&pool, 20).await?;
    if !failures.is_empty() {
        out.push_str("recent failures:\n");
        for f in failures {
            let _ = writeln!(out, "  {} ({}): {}", f.external_id, f.updated_at, f.last_error.unwrap_or_default());
        }
    }
    Ok(out)
}

/// `regsync login`: a device-code sign-in. `prompt` shows the identity
/// platform's instructions (the page and the code); the organizer's
/// tokens are stored sealed. Returns what to tell the operator.
///
/// # Errors
/// Not delegated, the sign-in did not finish, or the database failed.
pub async fn login(settings: &Settings, prompt: impl FnOnce(&str)) -> anyhow::Result<String> {
    if settings.graph.auth != GraphAuth::Delegated {
        anyhow::bail!(
            "regsync login signs organizers in for graph.auth = \"delegated\"; graph.auth is {:?}",
            settings.graph.auth.as_str()
        );
    }
    let sealer = sealer(settings)?.context("security.encryption_key is required")?;
    let pool = connect_and_migrate(settings).await?;
    let graph = graph::Client::new(&settings.graph)?;
    let code = graph.start_device_code().await?;
    prompt(&code.message);
    let tokens = graph.finish_device_code(&code).await?;
    let organizer = tokens.organizer_id.as_str();
    let refresh_token = sealer.seal(&tokens.refresh_token, &sync::sign_ins::seal_context(organizer, "refresh"))?;
    let access_token = sealer.seal(&tokens.access_token, &sync::sign_ins::seal_context(organizer, "access"))?;
    let expires_in = i64::try_from(tokens.expires_in).unwrap_or(3600);
    let sealed = store::sign_ins::SealedTokens {
        refresh_token: &refresh_token,
        access_token: &access_token,
        access_expires_at: chrono::Utc::now() + chrono::Duration::seconds(expires_in),
        scopes: tokens.scopes.as_deref(),
    };
    let due = store::sign_ins::save(&pool, organizer, tokens.upn.as_deref(), &sealed).await?;
    let mut out = format!(
        "signed in as {} (organizer id {organizer}); regsync now acts for this organizer's meetings",
        tokens.upn.as_deref().unwrap_or("an unnamed user")
    );
    if due > 0 {
        let _ = write!(out, "; {due} meeting(s) that waited for this sign-in are due again");
    }
    Ok(out)
}

/// `regsync logout <organizer-id>`: removes the organizer's sign-in.
///
/// # Errors
/// There is none, or the database failed.
pub async fn logout(settings: &Settings, organizer: &str) -> anyhow::Result<String> {
    let pool = connect_and_migrate(settings).await?;
    if !store::sign_ins::remove(&pool, organizer).await? {
        anyhow::bail!("organizer {organizer:?} has no sign-in (`regsync status` lists them)");
    }
    Ok(format!(
        "signed out organizer {organizer}: regsync no longer acts for their meetings (revoke the app's consent in \
         their account to end the refresh token at Microsoft too)"
    ))
}

/// `regsync plan`: what the next cycle would do for each meeting, one line
/// each; writes nothing at Graph or in the database.
///
/// # Errors
/// The database is unreachable or lacks a migration.
pub async fn plan(settings: Settings) -> anyhow::Result<String> {
    let pool = connect_migrated(&settings).await?;
    let ctx = context(Arc::new(settings), pool, Arc::default(), CancellationToken::new())?;
    let preview = sync::preview::preview(&ctx).await?;
    let mut out = String::new();
    if let Some(why) = &preview.partial {
        let _ = writeln!(out, "the listing is partial ({why}): no meeting is treated as missing");
    }
    for (id, intent) in &preview.meetings {
        let _ = writeln!(out, "{id}: {intent}");
    }
    let _ = writeln!(out, "{} meeting(s); nothing was written", preview.meetings.len());
    Ok(out)
}

/// What `regsync retry` makes due again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryWhat {
    /// One meeting, by the platform's id.
    Meeting(String),
    /// Every failed meeting and registrant (`--failed`).
    Failed,
    /// One organizer's rows, their condition ended (`--organizer`).
    Organizer(String),
}

/// `regsync retry`: makes rows due now with their attempts reset, and
/// forgets what they were resolved to (it may be what failed). Returns how
/// many rows were reset.
///
/// # Errors
/// The database is unreachable.
pub async fn retry(settings: &Settings, what: &RetryWhat) -> anyhow::Result<u64> {
    let pool = connect_and_migrate(settings).await?;
    let due = match what {
        RetryWhat::Meeting(id) => {
            store::resolutions::forget_for_retry(&pool, Some(id)).await?;
            store::meetings::retry(&pool, Some(id)).await?
        }
        RetryWhat::Failed => {
            store::resolutions::forget_for_retry(&pool, None).await?;
            store::meetings::retry(&pool, None).await? + store::registrants::retry_failed(&pool).await?
        }
        RetryWhat::Organizer(organizer) => store::organizers::make_due(&pool, organizer, None, None).await?,
    };
    if due > 0 {
        // Running replicas take them up now, not at their next interval.
        store::push::notify_due(&pool).await?;
    }
    Ok(due)
}

/// A one-paragraph summary of a tick for people.
pub fn summary(report: &TickReport) -> String {
    let p = &report.poll;
    let r = &report.reconcile;
    let mut text = format!(
        "poll: {} items on {} pages, {} new or changed, {} rejected{}\nsync: {} created, {} deleted, {} synced, {} retrying, {} failed",
        p.seen,
        p.pages,
        p.changed,
        p.rejected,
        p.partial.as_ref().map(|e| format!(" (partial listing: {e})")).unwrap_or_default(),
        r.created,
        r.deleted,
        r.synced,
        r.retrying,
        r.failed,
    );
    if let Some(poll) = &report.registrants {
        let g = &r.registrants;
        let _ = write!(
            text,
            "\nregistrants: {} listed, {} new or changed, {} rejected; {} enrolled, {} removed, {} written back, {} failed",
            poll.seen, poll.changed, poll.rejected, g.enrolled, g.removed, g.written_back, g.failed
        );
    }
    if let Some(e) = &report.error {
        let _ = write!(text, "\nerror: {e}");
    }
    text
}
