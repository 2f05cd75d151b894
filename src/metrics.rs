//! Prometheus metrics (names start with `regsync_`), rendered as OpenMetrics
//! text by `/metrics`. Counters and histograms are this process's, fed by
//! the engine: sum them over replicas. Gauges marked "the deployment's"
//! (meetings per state, the backlog, the throttle, live replicas, the last
//! successful poll) are read from the database, so every replica reports the
//! same value: aggregate them with `max`, never `sum`.

use std::sync::Mutex;

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::domain::CallRecord;
use crate::store::dashboard::Deployment;

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
    credential_errors: Counter,
    meetings: Family<StateLabels, Gauge>,
    due_now: Gauge,
    oldest_due_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    throttle_active: Gauge,
    writes_suspended: Gauge,
    replicas_alive: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
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
            credential_errors: Counter::default(),
            meetings: Family::default(),
            due_now: Gauge::default(),
            oldest_due_age: Gauge::default(),
            throttle_active: Gauge::default(),
            writes_suspended: Gauge::default(),
            replicas_alive: Gauge::default(),
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
            r.register(
                "credential_errors",
                "Cycles whose Graph credentials were refused (token endpoint, or a second 401)",
                m.credential_errors.clone(),
            );
            r.register("meetings", "Meetings per sync state (the deployment's)", m.meetings.clone());
            r.register("backlog_due_meetings", "Meetings due now (the deployment's)", m.due_now.clone());
            r.register(
                "backlog_oldest_due_age_seconds",
                "How long the meeting waiting longest has been due (the deployment's)",
                m.oldest_due_age.clone(),
            );
            r.register(
                "throttle_active",
                "1 while Graph is held for the whole deployment after a 429 (the deployment's)",
                m.throttle_active.clone(),
            );
            r.register(
                "graph_writes_suspended",
                "1 while Graph's registration API refuses every call and writes are suspended (the deployment's; \
                 the reason is in ops.graph_suspension)",
                m.writes_suspended.clone(),
            );
            r.register(
                "replicas_alive",
                "regsync run processes whose heartbeat is recent (the deployment's)",
                m.replicas_alive.clone(),
            );
            let build = Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION").into() });
            r.register("build", "This process's regsync version", build);
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

    /// Counts a cycle whose Graph credentials were refused.
    pub fn credentials_refused(&self) {
        self.credential_errors.inc();
    }

    /// The text exposition, with the deployment's figures when the store
    /// answered (the last values otherwise).
    pub fn render(&self, deployment: Option<&Deployment>) -> String {
        if let Some(d) = deployment {
            for s in &d.states {
                self.meetings.get_or_create(&StateLabels { state: s.state.as_str().to_owned() }).set(s.count);
            }
            if let Some(at) = d.last_poll {
                self.last_poll.set(at.timestamp_millis() as f64 / 1_000.0);
            }
            self.due_now.set(d.due_now);
            self.oldest_due_age.set(d.oldest_due_age_secs);
            self.throttle_active.set(i64::from(d.throttled));
            self.writes_suspended.set(i64::from(d.suspended.is_some()));
            self.replicas_alive.set(d.replicas_alive);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &registry);
        out
    }
}
