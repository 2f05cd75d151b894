//! Registrants (`--registrants N`): the first enrolment, with its
//! write-backs, against the same bound as registrations, then a steady cycle.

use std::time::{Duration, Instant};

use regsync::config::Settings;
use regsync::{store, sync};

use crate::report;
use crate::sim::{sim_stats, SimProcess};
use crate::{new_ctx, Args};

pub async fn bench(
    args: &Args,
    settings: &Settings,
    http: &reqwest::Client,
    sim: &SimProcess,
) -> anyhow::Result<report::Registrants> {
    let mut settings = settings.clone();
    settings.registrants.enabled = true;
    settings.registrants.path = "/registrants".into();
    settings.writeback.url = "/meetings/{meeting_id}/registrants/{registrant_id}/join-link".into();
    let ctx = new_ctx(&settings).await?;
    let (run, _) = store::runs::start_run(&ctx.pool).await?;
    sync::registrants::poll(&ctx, run).await?;
    let before = sim_stats(http, &sim.base).await?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3_600);
    loop {
        sync::reconcile_due(&ctx).await?;
        let open = store::registrants::open_count(&ctx.pool).await?;
        if open == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{open} registrants never settled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = sim_stats(http, &sim.base).await?;
    let enrolled = (after.registrants - before.registrants) as f64;
    let latency = Duration::from_millis(args.graph_latency_ms.max(1)).as_secs_f64();
    let concurrency_bound = args.concurrency as f64 / latency;
    let bound =
        if args.rate_limit == 0 { concurrency_bound } else { concurrency_bound.min(f64::from(args.rate_limit)) };
    let calls = (after.people_requests - before.people_requests) as f64;
    let write_backs = (after.write_backs - before.write_backs) as f64;
    let steady_before = sim_stats(http, &sim.base).await?;
    sync::tick(&ctx).await?;
    let steady_after = sim_stats(http, &sim.base).await?;
    Ok(report::Registrants {
        enrolled,
        rate: enrolled / secs,
        bound,
        calls_per_registrant: calls / enrolled.max(1.0),
        write_backs_per_registrant: write_backs / enrolled.max(1.0),
        steady_calls: (steady_after.people_requests - steady_before.people_requests)
            + (steady_after.write_backs - steady_before.write_backs),
    })
}
