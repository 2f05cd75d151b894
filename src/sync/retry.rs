//! The error policy: when a failed meeting is tried again, and when it is
//! parked. Pure functions; the retry state itself lives in Postgres, which is
//! why an in-memory retry crate does not fit here.

use std::time::Duration;

use crate::graph;

/// The retry settings, as durations.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Real attempts before parking.
    pub max_attempts: u32,
    /// First retry delay.
    pub base: Duration,
    /// Delay cap.
    pub cap: Duration,
    /// The least wait before looking up a write whose outcome is unknown:
    /// the request timeout, so a request Graph is still working on has
    /// finished before the lookup decides whether to write again (zero when
    /// the failed call was no write).
    pub settle: Duration,
}

impl Policy {
    /// The policy `sync` configures, with `settle` for an unknown outcome.
    pub fn new(sync: &crate::config::SyncSettings, settle: Duration) -> Self {
        Self {
            max_attempts: sync.max_attempts,
            base: Duration::from_millis(sync.backoff_base_ms),
            cap: Duration::from_millis(sync.backoff_max_ms),
            settle,
        }
    }
}

/// What a failed Graph call means for its meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Graph throttled: hold every request this long. Not an attempt.
    Hold(Duration),
    /// The app's credentials failed: pause the meeting. Not an attempt.
    AuthPause,
    /// The registration API refuses every call: suspend writes for the
    /// deployment. Not an attempt, and nothing is recorded as done.
    Suspend,
    /// A permanent error: park the meeting now.
    Park,
    /// A transient error, counted as an attempt.
    Attempt(Decision),
}

/// The error policy: what to do with a meeting whose Graph call failed
/// after `attempts` earlier real attempts, and how many real attempts it has
/// made now. Throttling and credential failures never count; a throttle
/// without Retry-After waits the backoff of the next attempt; a write whose
/// outcome is unknown waits at least `settle` before its lookup.
pub fn after_failure(e: &graph::Error, attempts: u32, policy: Policy, jitter: f64) -> (AfterFailure, u32) {
    if e.is_auth() {
        return (AfterFailure::AuthPause, attempts);
    }
    if matches!(e, graph::Error::Retired { .. }) {
        return (AfterFailure::Suspend, attempts);
    }
    if let graph::Error::Throttled { retry_after, .. } = e {
        let wait = retry_after.unwrap_or_else(|| backoff(attempts.saturating_add(1), policy.base, policy.cap, jitter));
        return (AfterFailure::Hold(throttle_wait(wait, jitter)), attempts);
    }
    if !e.is_transient() {
        return (AfterFailure::Park, attempts);
    }
    let attempts = attempts.saturating_add(1);
    let decision = match next_attempt(attempts, policy.max_attempts, policy.base, policy.cap, jitter) {
        Decision::RetryAfter(delay) if e.maybe_acted() => Decision::RetryAfter(delay.max(policy.settle)),
        other => other,
    };
    (AfterFailure::Attempt(decision), attempts)
}

/// The policy for a refusal that turned out to be the row's own
/// (`sync::scope`): `attempt` says whether it costs an attempt. Without one
/// the row waits the backoff of its next attempt.
pub fn after_row_refusal(attempts: u32, attempt: bool, policy: Policy, jitter: f64) -> (AfterFailure, u32) {
    if !attempt {
        let wait = backoff(attempts.saturating_add(1), policy.base, policy.cap, jitter);
        return (AfterFailure::Attempt(Decision::RetryAfter(wait)), attempts);
    }
    let attempts = attempts.saturating_add(1);
    (AfterFailure::Attempt(next_attempt(attempts, policy.max_attempts, policy.base, policy.cap, jitter)), attempts)
}

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
    use proptest::prelude::*;

    fn error() -> impl Strategy<Value = graph::Error> {
        let retry_after = proptest::option::of((0u64..7_200_000).prop_map(Duration::from_millis));
        prop_oneof![
            (prop_oneof![Just(429u16), Just(503u16), Just(509u16)], retry_after)
                .prop_map(|(status, retry_after)| graph::Error::Throttled { status, retry_after }),
            (proptest::option::of(500u16..600), any::<bool>()).prop_map(|(status, may_have_acted)| {
                graph::Error::Transient { status, may_have_acted, detail: String::new() }
            }),
            (400u16..500).prop_map(|status| graph::Error::Rejected {
                status,
                code: String::new(),
                message: String::new(),
                hint: String::new()
            }),
            Just(graph::Error::Unauthorized),
            Just(graph::Error::Token {
                status: Some(401),
                error: "invalid_client".into(),
                detail: String::new(),
                hint: "",
                retry_after: None,
            }),
            Just(graph::Error::Conflict { code: "Conflict".into() }),
            (prop_oneof![Just(403u16), Just(404u16), Just(410u16)]).prop_map(|status| graph::Error::Retired {
                status,
                code: String::new(),
                message: String::new()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn the_error_policy_counts_only_real_attempts_and_bounds_every_delay(
            e in error(),
            attempts in 0u32..200,
            max_attempts in 1u32..20,
            base_ms in 1u64..10_000,
            cap_ms in 10_000u64..7_200_000,
            jitter in 0.0f64..=1.0,
            settle_ms in 0u64..10_000,
        ) {
            let policy = Policy {
                max_attempts,
                base: Duration::from_millis(base_ms),
                cap: Duration::from_millis(cap_ms),
                settle: Duration::from_millis(settle_ms),
            };
            let (next, now) = after_failure(&e, attempts, policy, jitter);
            match next {
                AfterFailure::Hold(wait) => {
                    prop_assert_eq!(now, attempts, "throttling never counts");
                    prop_assert!(wait > Duration::ZERO || e.retry_after() == Some(Duration::ZERO));
                    if let Some(asked) = e.retry_after() {
                        prop_assert!(wait >= asked && wait <= asked + asked / 10 + Duration::from_nanos(1));
                    }
                }
                AfterFailure::AuthPause | AfterFailure::Suspend => prop_assert_eq!(now, attempts),
                AfterFailure::Park => prop_assert_eq!(now, attempts),
                AfterFailure::Attempt(decision) => {
                    prop_assert_eq!(now, attempts + 1);
                    match decision {
                        Decision::Park => prop_assert!(now >= max_attempts),
                        Decision::RetryAfter(d) => {
                            prop_assert!(now < max_attempts);
                            prop_assert!(d > Duration::ZERO && d <= policy.cap.max(policy.settle));
                            if e.maybe_acted() {
                                prop_assert!(d >= policy.settle, "an unknown outcome settles before its lookup");
                            }
                        }
                    }
                }
            }
        }

        #[test]
        fn retry_after_is_honoured_exactly_or_rejected(secs in 0u32..3_600, millis in 0u32..1_000, garbage in "[^0-9.]{1,12}") {
            let now = std::time::SystemTime::now();
            let text = format!("{secs}.{millis:03}");
            let parsed = crate::http::parse_retry_after(&text, now).expect("a number of seconds");
            let expected = Duration::from_secs(u64::from(secs)) + Duration::from_millis(u64::from(millis));
            prop_assert!(parsed.abs_diff(expected) < Duration::from_micros(1));
            prop_assert_eq!(crate::http::parse_retry_after(&garbage, now), None, "garbage falls back to the backoff");
        }
    }

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
