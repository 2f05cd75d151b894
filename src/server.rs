//! `/healthz` (the process is alive), `/readyz` (the database answers, the
//! last poll is recent, no shutdown under way) and `/metrics` (Prometheus
//! text) for `regsync run`. Reads shared state and the store; drives nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;
use tokio::time::Instant;

use crate::store;

/// What readiness depends on, updated by the daemon.
#[derive(Debug)]
pub struct Readiness {
    last_poll: Mutex<Option<Instant>>,
    stopping: AtomicBool,
    max_poll_age: Duration,
}

impl Readiness {
    /// Ready while a poll succeeded within `max_poll_age` (or none was due yet).
    pub fn new(max_poll_age: Duration) -> Self {
        Self { last_poll: Mutex::new(None), stopping: AtomicBool::new(false), max_poll_age }
    }

    /// Records a finished poll.
    pub fn polled(&self) {
        *self.last_poll.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Marks the start of shutdown: not ready from now on.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn poll_problem(&self) -> Option<String> {
        if self.stopping.load(Ordering::SeqCst) {
            return Some("shutting down".into());
        }
        match *self.last_poll.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Some("no poll has finished yet".into()),
            Some(at) if at.elapsed() > self.max_poll_age => Some(format!(
                "the last poll finished {} s ago (server.ready_max_poll_age_secs = {})",
                at.elapsed().as_secs(),
                self.max_poll_age.as_secs()
            )),
            Some(_) => None,
        }
    }
}

#[derive(Clone)]
struct AppState {
    pool: PgPool,
    readiness: Arc<Readiness>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// The router; serve it with graceful shutdown.
pub fn router(pool: PgPool, readiness: Arc<Readiness>, metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { pool, readiness, metrics })
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = tokio::time::timeout(Duration::from_secs(2), store::ping(&state.pool)).await;
    let problem = match db {
        Err(_) => Some("database did not answer within 2 s".to_owned()),
        Ok(Err(e)) => Some(format!("database unreachable: {e}")),
        Ok(Ok(())) => state.readiness.poll_problem(),
    };
    match problem {
        None => (StatusCode::OK, "ready\n".to_owned()),
        Some(p) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {p}\n")),
    }
}

async fn metrics_text(State(state): State<AppState>) -> impl IntoResponse {
    let counts = store::meetings::count_by_state(&state.pool).await.ok();
    let body = state.metrics.render(counts.as_deref());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn readiness_lapses_exactly_at_the_poll_age_bound_and_ends_with_shutdown() {
        let readiness = Readiness::new(Duration::from_secs(60));
        assert!(readiness.poll_problem().is_some(), "not ready before the first poll");

        readiness.polled();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(readiness.poll_problem(), None);
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(readiness.poll_problem().is_some_and(|p| p.contains("ready_max_poll_age_secs")));

        readiness.polled();
        readiness.stopping();
        assert_eq!(readiness.poll_problem().as_deref(), Some("shutting down"));
    }
}
