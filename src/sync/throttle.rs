//! The throttle protocol, in one place. When Graph answers 429 (or 503 with
//! `Retry-After`) to any request of any replica:
//!
//! 1. **Deployment-wide hold.** [`Throttle::throttled`] writes the time into
//!    the one `graph_throttle` row (`store::throttle`); until it has passed,
//!    no replica claims a meeting (`store::claims::claim_due`) or sends
//!    (`store::send::prepare_send` answers `Throttled`). The meeting that
//!    met the 429 is released without losing an attempt.
//! 2. **Local hold.** The process also keeps the hold in memory: workers
//!    already past their gate do not send, and the claim loop stops.
//! 3. **Probe.** After the hold, the first sender becomes the probe (for
//!    [`PROBE_TTL`]); every other sender waits for its answer. An answer
//!    that is not a throttle ends the recovery ([`Throttle::answered`]);
//!    a probe that never answers lapses and the next sender probes.
//! 4. **Concurrency.** The process drops to one call in flight and climbs
//!    back once Graph answers steadily, quickly to half of where it was
//!    throttled and by one per round above (`Concurrency`).
//!
//! A registration API that refuses every call (`graph::Error::Retired`)
//! suspends writes the same way, with its reason kept for operators and a
//! hold of `graph.suspended_probe_interval_ms` before each probe.
//!
//! Failed app credentials use the local hold alone ([`CREDENTIALS_HOLD`]):
//! they are this process's configuration, not Graph's load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use crate::{graph, store};

/// Which API a request went to, for what its answer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// A registration or its registrants (the API a suspension is about).
    RegistrationApi,
    /// Anything else: a directory or meeting lookup, a webinar's status.
    Other,
}

/// How long the probe after a hold keeps other senders waiting for its
/// answer (at most the request timeout).
pub const PROBE_TTL: Duration = Duration::from_secs(1);

/// How long this process stops calling Graph after its credentials failed.
pub const CREDENTIALS_HOLD: Duration = Duration::from_secs(30);

/// This process's side of the throttle: the local hold and the adaptive
/// concurrency.
#[derive(Debug)]
pub struct Throttle {
    hold_until: Mutex<Option<Instant>>,
    concurrency: Concurrency,
}

impl Throttle {
    /// No hold, `max_concurrency` calls in flight.
    pub fn new(max_concurrency: usize) -> Self {
        Self { hold_until: Mutex::new(None), concurrency: Concurrency::new(max_concurrency) }
    }

    /// The remaining local hold, if any.
    pub fn local_hold(&self) -> Option<Duration> {
        let until = (*self.hold_until.lock().unwrap_or_else(|p| p.into_inner()))?;
        let now = Instant::now();
        (until > now).then(|| until - now)
    }

    /// Holds this process for `wait`; never shortens a longer hold.
    fn hold_locally(&self, wait: Duration) {
        let mut hold = self.hold_until.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + wait;
        if hold.is_none_or(|h| h < until) {
            *hold = Some(until);
        }
    }

    /// Graph throttled: holds the deployment and this process for `wait` (or
    /// the longer hold already recorded) and drops to one call in flight.
    /// Returns how long the deployment is held.
    ///
    /// # Errors
    /// The hold could not be recorded.
    pub async fn throttled(&self, pool: &PgPool, wait: Duration) -> Result<Duration, store::Error> {
        let held = store::throttle::hold(pool, wait).await?;
        self.hold_locally(held);
        self.concurrency.throttled();
        Ok(held)
    }

    /// Graph's registration API refuses every call: holds the deployment
    /// and this process until the probe `probe_after` from now, with the
    /// reason for operators. Returns the hold.
    ///
    /// # Errors
    /// The suspension could not be recorded.
    pub async fn suspend(&self, pool: &PgPool, reason: &str, probe_after: Duration) -> Result<Duration, store::Error> {
        let held = store::throttle::suspend(pool, reason, probe_after).await?;
        self.hold_locally(held);
        self.concurrency.throttled();
        Ok(held)
    }

    /// What a request's `result` shows: an answer that is neither a
    /// throttle nor the API's refusal means Graph is taking requests again;
    /// a request never sent (no token, an expired permit, an id refused
    /// before sending) shows nothing. `probe`: the request was the probe
    /// after a hold, so every replica may send at full speed again; a
    /// suspension ends only when the probe was a call to the registration
    /// API itself (`call`).
    ///
    /// Called before the call's slot is freed: a throttle holds this process
    /// at once, so no sender waiting for the slot goes out into Graph's
    /// Retry-After window before the deployment-wide hold is written.
    pub async fn answered<T>(&self, pool: &PgPool, result: &Result<T, graph::Error>, probe: bool, call: Call) {
        if let Err(graph::Error::Throttled { retry_after, .. }) = result {
            if let Some(wait) = retry_after {
                self.hold_locally(*wait);
            }
            self.concurrency.throttled();
            return;
        }
        if matches!(
            result,
            Err(graph::Error::Throttled { .. }
                | graph::Error::Token { .. }
                | graph::Error::Retired { .. }
                | graph::Error::PermitExpired
                | graph::Error::InvalidId(_))
        ) {
            return;
        }
        self.concurrency.answered();
        if probe {
            if let Err(e) = store::throttle::end_recovery(pool, call == Call::RegistrationApi).await {
                tracing::warn!(error = %e, "cannot end the throttle recovery; the probe lease will lapse");
            }
        }
    }

    /// The app's credentials failed: this process stops calling Graph for
    /// [`CREDENTIALS_HOLD`].
    pub fn credentials_failed(&self) {
        self.hold_locally(CREDENTIALS_HOLD);
    }

    /// Waits for a free Graph call slot.
    pub async fn slot(&self) -> CallSlot<'_> {
        self.concurrency.slot().await
    }

    /// How many Graph calls may be in flight now.
    pub fn limit(&self) -> usize {
        self.concurrency.current()
    }
}

/// How many Graph calls may be in flight, adapted to throttling (additive
/// increase, multiplicative decrease). Requests already under way when Graph
/// throttles land inside its Retry-After window and are refused too, each a
/// call spent: fewer in flight while Graph throttles is cheaper.
///
/// - A throttle drops the limit to one.
/// - Only after [`STEADY_ANSWERS`] answers in a row without a throttle does
///   it climb: while Graph keeps throttling (a steady share of 429s) calls
///   go one at a time, and a throttle costs that one request.
/// - It then adds one per round of answers (as many answers as the limit,
///   about one per round trip), so a steady overload settles near Graph's
///   limit rather than swinging between full speed and none, and a passing
///   storm is behind it within `graph.max_concurrency` round trips. Never
///   above `graph.max_concurrency`.
///
/// Only the Graph call holds a slot: the database work around it overlaps
/// other calls.
#[derive(Debug)]
struct Concurrency {
    current: AtomicUsize,
    max: usize,
    growth: Mutex<Growth>,
    in_flight: Mutex<usize>,
    freed: tokio::sync::Notify,
}

/// Answers without a throttle, in a row, before the limit climbs again.
pub const STEADY_ANSWERS: u32 = 16;

/// Where the limit stands in its climb.
#[derive(Debug, Default)]
struct Growth {
    /// Answers without a throttle since the last one.
    streak: u32,
    /// Answers counted toward the next +1.
    credit: usize,
}

/// A Graph call slot; freed on drop.
pub struct CallSlot<'a>(&'a Concurrency);

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        *self.0.in_flight.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.freed.notify_waiters();
    }
}

impl Concurrency {
    /// Starts at `max`.
    fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            current: AtomicUsize::new(max),
            max,
            growth: Mutex::default(),
            in_flight: Mutex::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// The limit now.
    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Waits for a free slot under the current limit.
    async fn slot(&self) -> CallSlot<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if *in_flight < self.current() {
                    *in_flight += 1;
                    return CallSlot(self);
                }
            }
            freed.await;
        }
    }

    /// Graph throttled: one at a time.
    fn throttled(&self) {
        *self.growth.lock().unwrap_or_else(|p| p.into_inner()) = Growth::default();
        self.current.store(1, Ordering::Relaxed);
    }

    /// Graph answered without throttling.
    fn answered(&self) {
        let mut growth = self.growth.lock().unwrap_or_else(|p| p.into_inner());
        growth.streak = growth.streak.saturating_add(1);
        let current = self.current();
        if growth.streak >= STEADY_ANSWERS && current < self.max {
            growth.credit += 1;
            if growth.credit >= current {
                growth.credit = 0;
                self.current.store(current + 1, Ordering::Relaxed);
            }
        }
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_local_hold_ends_exactly_when_asked_and_is_never_shortened() {
        let throttle = Throttle::new(4);
        throttle.hold_locally(Duration::from_secs(5));
        throttle.hold_locally(Duration::from_secs(2));

        tokio::time::advance(Duration::from_millis(4_999)).await;
        assert_eq!(throttle.local_hold(), Some(Duration::from_millis(1)));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(throttle.local_hold(), None);
    }

    fn answer(c: &Concurrency, times: u32) -> usize {
        (0..times).for_each(|_| c.answered());
        c.current()
    }

    #[test]
    fn concurrency_drops_to_one_and_stays_there_while_graph_keeps_throttling() {
        let c = Concurrency::new(16);
        assert_eq!(c.current(), 16);
        for _ in 0..20 {
            c.throttled();
            assert_eq!(c.current(), 1);
            assert_eq!(answer(&c, STEADY_ANSWERS - 1), 1, "a throttle in every few answers keeps one in flight");
        }
    }

    #[test]
    fn concurrency_climbs_by_one_per_round_once_graph_answers_steadily() {
        let c = Concurrency::new(4);
        c.throttled();
        assert_eq!(answer(&c, STEADY_ANSWERS - 1), 1);
        assert_eq!(answer(&c, 1), 2, "steady: the climb begins");
        assert_eq!(answer(&c, 1), 2);
        assert_eq!(answer(&c, 1), 3, "a round of two answers at two");
        assert_eq!(answer(&c, 2), 3);
        assert_eq!(answer(&c, 1), 4);
        assert_eq!(answer(&c, 1_000), 4, "never above graph.max_concurrency");
        c.throttled();
        assert_eq!(c.current(), 1);
    }
}
