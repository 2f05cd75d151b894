//! Microsoft's limit on virtual-event writes, kept by each process.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Microsoft's limit on virtual-event writes: at most `n` in any 30 s, per
/// process. A write counts from when it is sent until 30 s after its
/// answer: Graph counts it on arrival, which lies between the two, so no
/// 30-second window at Graph ever holds more than `n`.
pub struct WritePace {
    limit: usize,
    state: Mutex<PaceState>,
    freed: tokio::sync::Notify,
}

#[derive(Default)]
struct PaceState {
    /// When recent writes were answered.
    answered: VecDeque<Instant>,
    /// Writes sent and not answered yet.
    in_flight: usize,
}

/// The window of [`WritePace`].
const WRITE_WINDOW: Duration = Duration::from_secs(30);

/// One write under the pace; its answer time counts from drop.
pub struct PacedWrite<'a>(&'a WritePace);

impl Drop for PacedWrite<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
        state.in_flight -= 1;
        state.answered.push_back(Instant::now());
        self.0.freed.notify_waiters();
    }
}

impl WritePace {
    /// At most `limit` writes per 30 s.
    pub fn new(limit: u32) -> Self {
        Self { limit: limit.max(1) as usize, state: Mutex::default(), freed: tokio::sync::Notify::new() }
    }

    /// Waits until one more write stays within the limit; hold the result
    /// until its answer has come.
    pub(super) async fn acquire(&self) -> PacedWrite<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                while state.answered.front().is_some_and(|at| now.duration_since(*at) >= WRITE_WINDOW) {
                    state.answered.pop_front();
                }
                if state.answered.len() + state.in_flight < self.limit {
                    state.in_flight += 1;
                    return PacedWrite(self);
                }
                state.answered.front().map(|oldest| *oldest + WRITE_WINDOW)
            };
            match wait {
                Some(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = freed => {}
                    }
                }
                None => freed.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_write_pace_lets_n_writes_through_per_30_seconds_counted_from_their_answers() {
        let pace = WritePace::new(15);
        let started = Instant::now();
        for _ in 0..15 {
            drop(pace.acquire().await);
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the first 15 go at once");

        tokio::time::advance(Duration::from_secs(5)).await;
        let in_flight = pace.acquire().await;
        assert_eq!(started.elapsed(), WRITE_WINDOW, "the 16th waits until the first answer is 30 s old");
        // Still unanswered, it holds its place: the next waits for the
        // second oldest answer, which is as old as the first.
        drop(in_flight);
        drop(pace.acquire().await);
        assert_eq!(started.elapsed(), WRITE_WINDOW);
        let mut late = 0;
        while tokio::time::timeout(Duration::from_secs(1), pace.acquire()).await.is_ok() {
            late += 1;
        }
        assert_eq!(late, 13, "15 in the window in all");
    }
}
