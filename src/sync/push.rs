//! A change the platform pushed (`POST /hooks/platform`): the one meeting or
//! registrant it names, carried in the delivery or read alone, validated as
//! a listed item, stored as a listing stores it, and made due at once in
//! every replica (`NOTIFY regsync_due`).

use serde_json::Value;

use crate::domain::RejectedItem;
use crate::source::{self, Page, RegistrantShape};
use crate::store;

use super::Ctx;

/// What a delivery names.
#[derive(Debug, Clone, PartialEq)]
pub enum Pushed {
    /// A meeting, by the platform's id.
    Meeting {
        /// Its id.
        id: String,
        /// The item itself, in the listing's shape, if the delivery carries it.
        item: Option<Value>,
    },
    /// A registrant of a meeting.
    Registrant {
        /// Their id.
        id: String,
        /// Their meeting's id.
        meeting_id: String,
        /// The item itself, if the delivery carries it.
        item: Option<Value>,
    },
}

/// Why a pushed change was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The item is not valid (recorded in `ops.rejected_items`), or not one
    /// regsync can take: nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The item could not be read from the platform: worth delivering again.
    #[error(transparent)]
    Platform(#[from] source::Error),
    /// The database failed: worth delivering again.
    #[error(transparent)]
    Store(#[from] store::Error),
}

/// Stores the change `pushed` names. Returns the rows it changed (each due
/// now, every replica woken); an item that did not change costs nothing more.
///
/// # Errors
/// [`PushError`]: an invalid item (recorded), the platform or the database.
pub async fn ingest(ctx: &Ctx, pushed: Pushed) -> Result<u64, PushError> {
    match pushed {
        // The meetings' upsert wakes every replica itself.
        Pushed::Meeting { id, item } => meeting(ctx, &id, item).await,
        Pushed::Registrant { id, meeting_id, item } => {
            let changed = registrant(ctx, &id, &meeting_id, item).await?;
            if changed > 0 {
                store::push::notify_due(&ctx.pool).await?;
            }
            Ok(changed)
        }
    }
}

async fn meeting(ctx: &Ctx, id: &str, item: Option<Value>) -> Result<u64, PushError> {
    let page = match item {
        Some(item) => ctx.source.meeting_item(&item),
        None => ctx.source.fetch_meeting(id).await?.ok_or_else(|| unknown("meeting", id, "source.item_path"))?,
    };
    let page = valid(ctx, page, id, |m| m.external_id.as_str()).await?;
    let listed_at = store::push::now(&ctx.pool).await?;
    let upserted = store::meetings::upsert_page(&ctx.pool, &page.accepted, listed_at).await?;
    if let Some((_, holder)) = upserted.shared.first() {
        let rejected = super::ingest::shared_teams_meeting(&page.accepted[0], holder);
        return Err(rejected_item(ctx, rejected).await);
    }
    Ok(upserted.changed)
}

async fn registrant(ctx: &Ctx, id: &str, meeting_id: &str, item: Option<Value>) -> Result<u64, PushError> {
    let settings = &ctx.settings.registrants;
    if !settings.enabled {
        return Err(PushError::Invalid("a registrant was pushed, but registrants.enabled is false".into()));
    }
    // Validated at start; an error here names the key.
    let shape = RegistrantShape::new(settings).map_err(|e| PushError::Invalid(e.to_string()))?;
    let per_meeting = settings.path.contains("{meeting_id}").then_some(meeting_id);
    let page = match item {
        Some(item) => ctx.source.registrant_item(&shape, &item, per_meeting),
        None => ctx
            .source
            .fetch_registrant(settings, &shape, meeting_id, id)
            .await?
            .ok_or_else(|| unknown("registrant", id, "registrants.item_path"))?,
    };
    let page = valid(ctx, page, id, |r| r.external_id.as_str()).await?;
    if let Some(other) = page.accepted.iter().find(|r| r.meeting_external_id != meeting_id) {
        let why = format!(
            "registrant {id:?} belongs to meeting {:?}, not to meeting {meeting_id:?} as the delivery says",
            other.meeting_external_id
        );
        return Err(PushError::Invalid(why));
    }
    Ok(store::registrants::upsert_page(&ctx.pool, &page.accepted).await?)
}

/// The page of one, when its item is valid and the one named: a rejected
/// item is recorded like a listed one.
async fn valid<T>(ctx: &Ctx, mut page: Page<T>, id: &str, id_of: impl Fn(&T) -> &str) -> Result<Page<T>, PushError> {
    if let Some(rejected) = page.rejected.pop() {
        return Err(rejected_item(ctx, rejected).await);
    }
    let found = page.accepted.first().map(&id_of).or(page.ignored.first().map(String::as_str));
    match found {
        Some(found) if found != id => {
            Err(PushError::Invalid(format!("the item's id is {found:?}, but the delivery names {id:?}")))
        }
        _ => Ok(page),
    }
}

/// Records `rejected` in `ops.rejected_items` and says why.
async fn rejected_item(ctx: &Ctx, rejected: RejectedItem) -> PushError {
    let reason = rejected.reason.clone();
    match store::runs::insert_rejected(&ctx.pool, None, &[rejected]).await {
        Ok(()) => PushError::Invalid(reason),
        Err(e) => e.into(),
    }
}

fn unknown(what: &str, id: &str, key: &str) -> PushError {
    PushError::Invalid(format!("the platform has no {what} {id:?} ({key} answered 404 or 410); nothing changed"))
}
