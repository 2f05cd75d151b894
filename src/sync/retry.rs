//! The error policy: when a failed meeting is tried again, and when it is
//! parked. Pure functions; the retry state itself lives in Postgres, which is
//! why an in-memory retry crate does not fit here.

use std::time::Duration;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this delay.
    RetryAfter(Duration),
    /// Attempts are exhausted: park the meeting as `failed`.
    Park,
}

/// Capped exponential backoff with "equal jitter": the delay for attempt `n`
/// (1-based) lies in `[d/2, d]` where `d = min(cap, base * 2^(n-1))`, so
/// retries spread out but never collapse to zero. `jitter` is in `[0, 1]`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX)).min(cap);
    let half = exp / 2;
    half + half.mul_f64(jitter.clamp(0.0, 1.0))
}

/// The decision after `attempts` real attempts have failed.
pub fn next_attempt(attempts: u32, max_attempts: u32, base: Duration, cap: Duration, jitter: f64) -> Decision {
    if attempts >= max_attempts {
        Decision::Park
    } else {
        Decision::RetryAfter(backoff(attempts, base, cap, jitter))
    }
}

/// A Retry-After wait plus 0–10 % jitter, so replicas held together do not
/// all resume in the same millisecond.
pub fn throttle_wait(retry_after: Duration, jitter: f64) -> Duration {
    retry_after + retry_after.mul_f64(0.1 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_secs(2);
    const CAP: Duration = Duration::from_secs(3_600);

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_cap() {
        assert_eq!(backoff(1, BASE, CAP, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(2, BASE, CAP, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(5, BASE, CAP, 1.0), Duration::from_secs(32));
        assert_eq!(backoff(40, BASE, CAP, 1.0), CAP);
        assert_eq!(backoff(u32::MAX, BASE, CAP, 1.0), CAP);
    }

    #[test]
    fn jitter_never_takes_the_delay_below_half_or_above_the_cap() {
        for attempt in 0..70 {
            for jitter in [0.0, 0.3, 0.999, 1.0, -1.0, 7.0] {
                let d = backoff(attempt, BASE, CAP, jitter);
                let full = backoff(attempt, BASE, CAP, 1.0);
                assert!(d <= CAP && d >= full / 2 && d > Duration::ZERO, "{attempt} {jitter} {d:?}");
            }
        }
    }

    #[test]
    fn the_last_attempt_parks_the_meeting() {
        assert_eq!(next_attempt(8, 8, BASE, CAP, 0.5), Decision::Park);
        assert!(matches!(next_attempt(7, 8, BASE, CAP, 0.5), Decision::RetryAfter(_)));
    }

    #[test]
    fn throttle_waits_are_at_least_what_graph_asked() {
        let asked = Duration::from_secs(10);
        assert_eq!(throttle_wait(asked, 0.0), asked);
        assert_eq!(throttle_wait(asked, 1.0), Duration::from_secs(11));
    }
}
