//! Microsoft's limit on virtual-event writes, kept for the whole
//! deployment: every replica takes its places from one budget in the
//! database (`store::throttle::take_write_place`).

use std::time::Duration;

use sqlx::PgPool;

use crate::store;

/// The window of Microsoft's limit.
const WRITE_WINDOW: Duration = Duration::from_secs(30);

/// Microsoft's limit on virtual-event writes: at most `limit` in any 30 s,
/// per app, across every replica. A write counts from when it is sent until
/// 30 s after its answer: Graph counts it on arrival, which lies between the
/// two, so no 30-second window at Graph ever holds more than `limit`.
pub struct WritePace {
    limit: u32,
    /// The longest a write can be at Graph unanswered.
    timeout: Duration,
}

/// One write's place in the budget; its answer time counts from drop.
pub struct PacedWrite {
    pool: PgPool,
    place: i64,
}

impl Drop for PacedWrite {
    fn drop(&mut self) {
        let (pool, place) = (self.pool.clone(), self.place);
        // Best effort: an answer never recorded frees its place after the
        // request timeout plus the window.
        tokio::spawn(async move {
            if let Err(e) = store::throttle::write_answered(&pool, place).await {
                tracing::warn!(error = %e, "cannot record a write's answer; its place frees later");
            }
        });
    }
}

impl WritePace {
    /// At most `limit` writes per 30 s; a write is answered within `timeout`.
    pub fn new(limit: u32, timeout: Duration) -> Self {
        Self { limit: limit.max(1), timeout }
    }

    /// A place for one more write within the deployment's limit (hold it
    /// until the answer has come), or how long until one frees.
    ///
    /// # Errors
    /// The database failed.
    pub(super) async fn take(&self, pool: &PgPool) -> Result<Result<PacedWrite, Duration>, store::Error> {
        let taken = store::throttle::take_write_place(pool, self.limit, WRITE_WINDOW, self.timeout).await?;
        Ok(taken.map(|place| PacedWrite { pool: pool.clone(), place }))
    }
}
