//! Pushed change → registration: `regsync run` replicas (tasks of this
//! process, each the whole daemon), one serving `POST /hooks/platform`; a
//! signed delivery carrying a new meeting, timed until the meeting is
//! synced, one at a time. The time includes Graph's latency, so it bounds
//! "pushed change → Graph request" from above.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use regsync::config::Settings;
use regsync_sim::SimMeeting;
use secrecy::SecretString;
use serde_json::json;
use sqlx::PgPool;

use crate::sim::SimProcess;

const SECRET: &str = "bench-hooks-secret-0123456789abcdef";

/// Latencies of one set of samples, in seconds.
#[derive(Clone, Copy, Default)]
pub struct PushLatency {
    pub replicas: usize,
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// The replicas run; where the webhook is served.
pub struct Replicas {
    hooks: String,
    running: usize,
    settings: Settings,
}

fn free_address() -> anyhow::Result<String> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

/// A replica's settings: it never polls on schedule (only once at start)
/// and looks for due rows every ten minutes, so only `NOTIFY` wakes it.
fn replica(settings: &Settings, hooks: Option<&str>) -> anyhow::Result<Settings> {
    let mut s = settings.clone();
    s.server.listen = free_address()?;
    s.sync.poll_schedule = "0 0 3 29 2 *".into();
    s.sync.reconcile_interval_ms = 600_000;
    s.hooks.secret = Some(SecretString::from(SECRET));
    s.hooks.listen = hooks.unwrap_or_default().to_owned();
    s.hooks.client_rate_per_second = 10_000;
    Ok(s)
}

impl Replicas {
    /// Starts the first replica, with the webhook listener, and waits for
    /// its first poll.
    pub async fn start(settings: &Settings, pool: &PgPool) -> anyhow::Result<Self> {
        let hooks = free_address()?;
        let mut replicas =
            Self { hooks: format!("http://{hooks}/hooks/platform"), running: 0, settings: settings.clone() };
        replicas.add(pool, replica(settings, Some(&hooks))?).await?;
        Ok(replicas)
    }

    /// Starts replicas until `n` run.
    pub async fn grow_to(&mut self, n: usize, pool: &PgPool) -> anyhow::Result<()> {
        while self.running < n {
            let settings = replica(&self.settings, None)?;
            self.add(pool, settings).await?;
        }
        Ok(())
    }

    async fn add(&mut self, pool: &PgPool, settings: Settings) -> anyhow::Result<()> {
        let polls: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE finished_at IS NOT NULL").fetch_one(pool).await?;
        tokio::spawn(regsync::app::run(settings));
        self.running += 1;
        // Its first poll (or another replica's within the lease) is done.
        let deadline = Instant::now() + Duration::from_secs(600);
        while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_runs WHERE finished_at IS NOT NULL")
            .fetch_one(pool)
            .await?
            <= polls
            && self.running == 1
        {
            anyhow::ensure!(Instant::now() < deadline, "the first replica never finished its first poll");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await; // listening
        Ok(())
    }

    /// `samples` pushes of new meetings, one at a time.
    pub async fn measure(
        &self,
        http: &reqwest::Client,
        sim: &SimProcess,
        pool: &PgPool,
        samples: usize,
    ) -> anyhow::Result<PushLatency> {
        let mut took = Vec::with_capacity(samples);
        for i in 0..samples {
            let id = format!("push-{}-{i}", self.running);
            let m = SimMeeting::new(
                &id,
                "0f0f0f0f-0000-4000-8000-0000000000bb",
                &format!("MSpPush{}x{i:05}", self.running),
            );
            // Graph learns of the online meeting; the platform pushes the change.
            http.post(format!("{}/_sim/meetings", sim.base)).json(&m).send().await?.error_for_status()?;
            let body = json!({"kind": "meeting", "id": id, "item": m}).to_string();
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
            let signature = regsync::hooks::sign(SECRET.as_bytes(), t, body.as_bytes());
            let started = Instant::now();
            let answer = http
                .post(&self.hooks)
                .header("content-type", "application/json")
                .header("regsync-signature", signature)
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(answer.status().as_u16() == 202, "the webhook answered {}", answer.status());
            let deadline = started + Duration::from_secs(60);
            loop {
                let synced: Option<bool> =
                    sqlx::query_scalar("SELECT state = 'synced' FROM meetings WHERE external_id = $1")
                        .bind(&id)
                        .fetch_optional(pool)
                        .await?;
                if synced == Some(true) {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "pushed meeting {id} was not registered within a minute");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            took.push(started.elapsed().as_secs_f64());
        }
        took.sort_by(f64::total_cmp);
        let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
        Ok(PushLatency {
            replicas: self.running,
            samples,
            p50: at(0.5),
            p99: at(0.99),
            max: *took.last().context("no samples")?,
        })
    }
}
