//! Would JSON batching pay for regsync's reads? The lookup regsync makes
//! (`GET …/registration`), sent one request each and in `$batch`es of 20,
//! with the same HTTP requests in flight and the same pace of Graph requests
//! -- each request inside a batch counts, as Graph counts it.

use std::sync::Arc;
use std::time::Duration;

use regsync_sim::SimMeeting;
use serde_json::{json, Value};
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use crate::sim::SimProcess;

/// Graph's most requests in one batch.
const BATCH: usize = 20;

/// One setting, measured both ways.
#[derive(Clone, Copy)]
pub struct Row {
    pub concurrency: usize,
    /// Graph requests per second (0: no pace).
    pub pace: u32,
    pub lookups: usize,
    pub single_rate: f64,
    pub batched_rate: f64,
    /// Answers other than 200/404 (throttled, failed), either way.
    pub refused: usize,
}

/// The settings measured: the benchmark's concurrency unpaced and at
/// regsync's default pace (30/s), then that pace with one and two requests
/// in flight, where the latency rather than the pace may bound them.
pub async fn measure(
    http: &reqwest::Client,
    sim: &SimProcess,
    lookups: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Row>> {
    let token = regsync_sim::app_token(http, &sim.base).await?;
    let urls: Vec<String> = (1..=lookups)
        .map(|i| {
            let m = SimMeeting::generated(i);
            format!("/users/{}/onlineMeetings/{}/registration", m.organizer_id, m.online_meeting_id)
        })
        .collect();
    let mut rows = Vec::new();
    for (concurrency, pace) in [(concurrency, 0), (concurrency, 30), (1, 30), (2, 30)] {
        let (single_secs, refused_single) = run(http, sim, &token, &urls, 1, concurrency, pace).await?;
        let (batched_secs, refused_batched) = run(http, sim, &token, &urls, BATCH, concurrency, pace).await?;
        rows.push(Row {
            concurrency,
            pace,
            lookups,
            single_rate: lookups as f64 / single_secs,
            batched_rate: lookups as f64 / batched_secs,
            refused: refused_single + refused_batched,
        });
    }
    Ok(rows)
}

/// The pace: each Graph request takes the next slot `1 / pace` after the
/// previous one; a batch takes as many slots as it holds requests and goes
/// at its last, so neither way sends a request before its slot.
struct Pace {
    next: Mutex<Instant>,
    gap: Duration,
}

impl Pace {
    async fn take(&self, requests: usize) {
        if self.gap.is_zero() {
            return;
        }
        let at = {
            let mut next = self.next.lock().await;
            let first = (*next).max(Instant::now());
            *next = first + self.gap * requests as u32;
            first + self.gap * (requests as u32).saturating_sub(1)
        };
        tokio::time::sleep_until(at).await;
    }
}

/// Looks every url up in HTTP requests of `per_request` each; the seconds it
/// took and the answers that were neither 200 nor 404.
async fn run(
    http: &reqwest::Client,
    sim: &SimProcess,
    token: &str,
    urls: &[String],
    per_request: usize,
    concurrency: usize,
    pace: u32,
) -> anyhow::Result<(f64, usize)> {
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let gap = if pace == 0 { Duration::ZERO } else { Duration::from_secs_f64(1.0 / f64::from(pace)) };
    let pace = Arc::new(Pace { next: Mutex::new(Instant::now()), gap });
    let started = Instant::now();
    let mut sending = tokio::task::JoinSet::new();
    for chunk in urls.chunks(per_request) {
        let (http, slots, pace) = (http.clone(), slots.clone(), pace.clone());
        let (base, token, chunk) = (sim.base.clone(), token.to_owned(), chunk.to_vec());
        sending.spawn(async move {
            let _slot = slots.acquire_owned().await?;
            pace.take(chunk.len()).await;
            let statuses: Vec<u64> = if let [url] = chunk.as_slice() {
                let answer = http.get(format!("{base}/graph/beta{url}")).bearer_auth(&token).send().await?;
                vec![u64::from(answer.status().as_u16())]
            } else {
                let requests: Vec<Value> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, url)| json!({"id": i.to_string(), "method": "GET", "url": url}))
                    .collect();
                let answer: Value = http
                    .post(format!("{base}/graph/beta/$batch"))
                    .bearer_auth(&token)
                    .json(&json!({"requests": requests}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let responses = answer["responses"].as_array().cloned().unwrap_or_default();
                anyhow::ensure!(
                    responses.len() == chunk.len(),
                    "a batch answered {} of {}",
                    responses.len(),
                    chunk.len()
                );
                responses.iter().map(|r| r["status"].as_u64().unwrap_or(0)).collect()
            };
            anyhow::Ok(statuses.into_iter().filter(|s| *s != 200 && *s != 404).count())
        });
    }
    let mut refused = 0;
    while let Some(done) = sending.join_next().await {
        refused += done??;
    }
    Ok((started.elapsed().as_secs_f64(), refused))
}
