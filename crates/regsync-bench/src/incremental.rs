//! The incremental cycle: with `source.changed_since_param`, one percent of
//! the listing changed since the last poll is listed, ingested and
//! reconciled, against fetching and parsing the whole listing.

use std::time::{Duration, Instant};

use regsync::config::Settings;
use regsync::sync;

use crate::sim::{sim_stats, total_requests, touch, SimProcess};

/// What an incremental cycle did.
#[derive(Clone, Copy)]
pub struct Incremental {
    /// How long it took.
    pub secs: f64,
    /// Items it read.
    pub seen: u64,
    /// Graph requests it made.
    pub graph_calls: u64,
}

/// The watermark's overlap here: short, so the measured cycle lists the one
/// percent changed since the previous poll and not the changes of the
/// overlap before it (with the default 300 s it would list both).
const OVERLAP: Duration = Duration::from_secs(2);

/// A full listing that sets the watermark, then (past the overlap) one
/// percent of the meetings changed and one incremental cycle.
pub async fn cycle(settings: &Settings, http: &reqwest::Client, sim: &SimProcess) -> anyhow::Result<Incremental> {
    let mut settings = settings.clone();
    settings.source.changed_since_param = "changed_since".into();
    settings.source.changed_since_overlap_secs = OVERLAP.as_secs();
    let ctx = crate::new_ctx(&settings).await?;
    // The newest modification time the full listing sees is now.
    touch(http, &sim.base, 100).await?;
    let full = sync::tick(&ctx).await?;
    anyhow::ensure!(full.poll.full, "the first listing with a filter is a full one");
    tokio::time::sleep(OVERLAP + Duration::from_millis(500)).await;
    touch(http, &sim.base, 100).await?;
    let before = total_requests(&sim_stats(http, &sim.base).await?);
    let started = Instant::now();
    let report = sync::tick(&ctx).await?;
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(!report.poll.full, "the cycle after it is incremental");
    let graph_calls = total_requests(&sim_stats(http, &sim.base).await?) - before;
    Ok(Incremental { secs, seen: report.poll.seen, graph_calls })
}
