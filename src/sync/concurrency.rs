//! How many Graph calls this process has in flight, adapted to throttling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many Graph calls may be in flight, adapted to throttling: a throttle
/// drops it to one (requests already under way when Graph throttles are
/// wasted, so fewer of them are better), each answer that is not a throttle
/// raises it by one, up to `graph.max_concurrency`. Only the Graph call holds
/// a slot: the database work around it overlaps other calls.
#[derive(Debug)]
pub struct Concurrency {
    current: AtomicUsize,
    max: usize,
    in_flight: Mutex<usize>,
    freed: tokio::sync::Notify,
}

/// A Graph call slot; freed on drop.
pub struct Slot<'a>(&'a Concurrency);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.in_flight.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.freed.notify_waiters();
    }
}

impl Concurrency {
    /// Starts at `max`.
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Self { current: AtomicUsize::new(max), max, in_flight: Mutex::new(0), freed: tokio::sync::Notify::new() }
    }

    /// The limit now.
    pub fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Waits for a free slot under the current limit.
    pub async fn slot(&self) -> Slot<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
                if *in_flight < self.current() {
                    *in_flight += 1;
                    return Slot(self);
                }
            }
            freed.await;
        }
    }

    /// Graph throttled: one at a time.
    pub fn throttled(&self) {
        self.current.store(1, Ordering::Relaxed);
    }

    /// Graph answered without throttling: one more.
    pub fn answered(&self) {
        let _ = self.current.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some((c + 1).min(self.max)));
        self.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::Concurrency;

    #[test]
    fn concurrency_drops_to_one_on_throttling_and_climbs_back_one_answer_at_a_time() {
        let c = Concurrency::new(4);
        assert_eq!(c.current(), 4);
        c.throttled();
        assert_eq!(c.current(), 1);
        c.answered();
        c.answered();
        assert_eq!(c.current(), 3);
        for _ in 0..10 {
            c.answered();
        }
        assert_eq!(c.current(), 4);
    }
}
