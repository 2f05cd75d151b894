//! Prometheus metrics (names start with `regsync_`), rendered as OpenMetrics
//! text by `/metrics`. Counters are fed by the engine; meetings per state and
//! the last successful poll are the deployment's, read from the store, so
//! every replica reports the same.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::domain::CallRecord;
use crate::store::StateCount;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// Every regsync metric.
pub struct Metrics {
    registry: Mutex<Registry>,
    graph_requests: Family<CallLabels, Counter>,
    graph_latency: Family<MethodLabels, Histogram>,
    outcomes: Family<KindLabels, Counter>,
    polls: Family<KindLabels, Counter>,
    poll_duration: Histogram,
    last_poll: Gauge<f64, std::sync::atomic::AtomicU64>,
    throttle_pauses: Counter,
    meetings: Family<StateLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Self {
            registry: Mutex::new(Registry::with_prefix("regsync")),
            graph_requests: Family::default(),
            graph_latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            outcomes: Family::default(),
            polls: Family::default(),
            poll_duration: Histogram::new(exponential_buckets(0.01, 2.0, 16)),
            last_poll: Gauge::default(),
            throttle_pauses: Counter::default(),
            meetings: Family::default(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.register(
                "graph_requests",
                "Graph requests by method and HTTP status (0: no answer)",
                m.graph_requests.clone(),
            );
            r.register("graph_request_duration_seconds", "Graph request latency", m.graph_latency.clone());
            r.register("reconcile_outcomes", "Meeting reconciles by outcome", m.outcomes.clone());
            r.register("polls", "Platform polls by result (complete, partial, failed)", m.polls.clone());
            r.register("poll_duration_seconds", "Duration of a platform poll", m.poll_duration.clone());
            r.register(
                "last_successful_poll_timestamp_seconds",
                "Unix time of the deployment's last complete or partial poll (any replica)",
                m.last_poll.clone(),
            );
            r.register(
                "throttle_pauses",
                "Times Graph asked regsync to wait (429/503 with Retry-After)",
                m.throttle_pauses.clone(),
            );
            r.register("meetings", "Meetings per sync state", m.meetings.clone());
        }
        m
    }
}

impl Metrics {
    /// Counts Graph requests and their latency.
    pub fn graph_calls(&self, calls: &[CallRecord]) {
        for c in calls {
            let status = c.http_status.map_or_else(|| "0".to_owned(), |s| s.to_string());
            self.graph_requests.get_or_create(&CallLabels { method: c.method.into(), status }).inc();
            self.graph_latency
                .get_or_create(&MethodLabels { method: c.method.into() })
                .observe(c.duration.as_secs_f64());
        }
    }

    /// Counts one reconcile outcome (synced, retrying, failed, ...).
    pub fn outcome(&self, kind: &str) {
        self.outcomes.get_or_create(&KindLabels { kind: kind.into() }).inc();
    }

    /// Counts a throttle pause.
    pub fn throttled(&self) {
        self.throttle_pauses.inc();
    }

    /// Records a finished poll.
    pub fn poll(&self, result: &str, took: Duration) {
        self.polls.get_or_create(&KindLabels { kind: result.into() }).inc();
        self.poll_duration.observe(took.as_secs_f64());
    }

    /// The text exposition, with the deployment's meetings per state and
    /// last successful poll when the store answered.
    pub fn render(&self, states: Option<&[StateCount]>, last_poll: Option<DateTime<Utc>>) -> String {
        for s in states.unwrap_or_default() {
            self.meetings.get_or_create(&StateLabels { state: s.state.clone() }).set(s.count);
        }
        if let Some(at) = last_poll {
            self.last_poll.set(at.timestamp_millis() as f64 / 1_000.0);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}
