//! `/healthz` (the process is alive), `/readyz` (the database answers, the
//! deployment's last successful poll is recent, no shutdown under way) and
//! `/metrics` (Prometheus text) for `regsync run`. Reads shared state and,
//! through a pool of its own, the deployment's figures at most every
//! [`SNAPSHOT_TTL`](crate::server::SNAPSHOT_TTL); drives nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::dashboard::Deployment;
use crate::store::{self};

/// Scrapes and probes within this long of each other share one read of the
/// database, so a flood of them costs the database nothing more.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(2);

/// What readiness depends on besides the database.
#[derive(Debug)]
pub struct Readiness {
    stopping: AtomicBool,
    max_poll_age: Duration,
}

impl Readiness {
    /// Ready while the deployment's last successful poll is at most
    /// `max_poll_age` old.
    pub fn new(max_poll_age: Duration) -> Self {
        Self { stopping: AtomicBool::new(false), max_poll_age }
    }

    /// Marks the start of shutdown: not ready from now on.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Why the process is not ready, given when the deployment (any
    /// replica) last polled successfully.
    fn problem(&self, last_poll: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        let Some(last_poll) = last_poll else { return Some("no poll has succeeded yet".into()) };
        let age = (now - last_poll).to_std().unwrap_or_default();
        (age > self.max_poll_age).then(|| {
            format!(
                "the last successful poll finished {} s ago (server.ready_max_poll_age_secs = {})",
                age.as_secs(),
                self.max_poll_age.as_secs()
            )
        })
    }
}

/// The deployment's figures as the database last told them.
#[derive(Debug, Clone)]
struct Snapshot {
    read_at: Instant,
    figures: Result<Deployment, String>,
}

#[derive(Clone)]
struct AppState {
    pool: PgPool,
    readiness: Arc<Readiness>,
    metrics: Arc<crate::metrics::Metrics>,
    snapshot: Arc<Mutex<Option<Snapshot>>>,
}

impl AppState {
    /// The figures, read again when older than [`SNAPSHOT_TTL`]; concurrent
    /// callers wait for one read.
    async fn figures(&self) -> Result<Deployment, String> {
        let mut snapshot = self.snapshot.lock().await;
        if let Some(s) = snapshot.as_ref().filter(|s| s.read_at.elapsed() < SNAPSHOT_TTL) {
            return s.figures.clone();
        }
        let figures = match tokio::time::timeout(SNAPSHOT_TTL, store::dashboard::read(&self.pool)).await {
            Err(_) => Err(format!("the database did not answer within {} s", SNAPSHOT_TTL.as_secs())),
            Ok(Err(e)) => Err(format!("database unreachable: {e}")),
            Ok(Ok(figures)) => Ok(figures),
        };
        *snapshot = Some(Snapshot { read_at: Instant::now(), figures: figures.clone() });
        figures
    }
}

/// The router; serve it with graceful shutdown. `pool` should be the
/// server's own ([`store::connect_observer`]), not the engine's.
pub fn router(pool: PgPool, readiness: Arc<Readiness>, metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { pool, readiness, metrics, snapshot: Arc::default() })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let problem = match state.figures().await {
        Err(e) => Some(e),
        Ok(f) => state
            .readiness
            .problem(f.last_poll, Utc::now())
            .or_else(|| f.suspended.map(|reason| format!("Graph writes are suspended for the deployment: {reason}"))),
    };
    match problem {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {p}\n")),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let figures = state.figures().await.ok();
    let body = state.metrics.render(figures.as_ref());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lapses_exactly_at_the_poll_age_bound_and_ends_with_shutdown() {
        let readiness = Readiness::new(Duration::from_secs(60));
        let polled = Utc::now();

        assert_eq!(readiness.problem(Some(polled), polled + chrono::Duration::seconds(60)), None);
        let late = readiness.problem(Some(polled), polled + chrono::Duration::milliseconds(60_001));
        assert!(late.is_some_and(|p| p.contains("ready_max_poll_age_secs")));

        readiness.stopping();
        assert_eq!(readiness.problem(Some(polled), polled).as_deref(), Some("shutting down"));
    }
}
