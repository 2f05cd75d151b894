//! `regsync-sim`: the simulated platform, identity platform and Graph as a
//! standalone server, for `docker compose up`, manual runs and the chaos tests.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use regsync_sim::{FaultRates, Retirement, Sim, SimMeeting};

/// Serves a simulated event platform, token endpoint and Microsoft Graph.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "REGSYNC_SIM_LISTEN")]
    listen: SocketAddr,
    /// Meetings to seed (every 7th for organization, every 10th cancelled).
    #[arg(long, default_value_t = 100, env = "REGSYNC_SIM_MEETINGS")]
    meetings: usize,
    /// Latency added to every Graph request, in milliseconds.
    #[arg(long, default_value_t = 0, env = "REGSYNC_SIM_LATENCY_MS")]
    latency_ms: u64,
    /// Share of Graph requests answered 429.
    #[arg(long, default_value_t = 0.0, env = "REGSYNC_SIM_THROTTLE_RATE")]
    throttle_rate: f64,
    /// Retry-After of those 429s, in seconds.
    #[arg(long, default_value_t = 1.0, env = "REGSYNC_SIM_RETRY_AFTER_SECS")]
    retry_after_secs: f64,
    /// Share of Graph requests answered 500/503.
    #[arg(long, default_value_t = 0.0, env = "REGSYNC_SIM_ERROR_RATE")]
    error_rate: f64,
    /// Share of Graph requests acted on whose response is lost.
    #[arg(long, default_value_t = 0.0, env = "REGSYNC_SIM_LOST_RESPONSE_RATE")]
    lost_response_rate: f64,
    /// Share of Graph requests acted on and answered only after --timeout-delay-ms.
    #[arg(long, default_value_t = 0.0, env = "REGSYNC_SIM_TIMEOUT_RATE")]
    timeout_rate: f64,
    /// How late those answers come, in milliseconds.
    #[arg(long, default_value_t = 35_000, env = "REGSYNC_SIM_TIMEOUT_DELAY_MS")]
    timeout_delay_ms: u64,
    /// List meetings by organizer e-mail and Teams join link (as real
    /// platforms do) instead of Graph's ids.
    #[arg(long, env = "REGSYNC_SIM_BY_REFERENCE")]
    by_reference: bool,
    /// Ask listing requests for an OAuth2 token from /platform/oauth2/token,
    /// living this many seconds (0: no token asked for).
    #[arg(long, default_value_t = 0, env = "REGSYNC_SIM_PLATFORM_OAUTH_LIFETIME_SECS")]
    platform_oauth_lifetime_secs: u64,
    /// Accept client assertions signed with this PEM certificate's key
    /// (graph.auth = "certificate").
    #[arg(long, env = "REGSYNC_SIM_TRUST_CERTIFICATE")]
    trust_certificate: Option<std::path::PathBuf>,
    /// Write a federated assertion the identity platform accepts to this
    /// file (graph.auth = "federated").
    #[arg(long, env = "REGSYNC_SIM_FEDERATED_TOKEN_FILE")]
    federated_token_file: Option<std::path::PathBuf>,
    /// Answer every registration call as a retired or refusing API does.
    #[arg(long, value_enum, env = "REGSYNC_SIM_RETIRED")]
    retired: Option<RetiredMode>,
    /// People registered on the platform, spread over the active meetings
    /// open to everyone (`/platform/registrants`, or per meeting).
    #[arg(long, default_value_t = 0, env = "REGSYNC_SIM_REGISTRANTS")]
    registrants: usize,
    /// Every meeting is also a published webinar (graph.target =
    /// "virtual_event_webinar", with source.fields.webinar_id =
    /// "/online_meeting_id").
    #[arg(long, env = "REGSYNC_SIM_WEBINARS")]
    webinars: bool,
    /// Sign every device-code login in at the first poll as this user
    /// (object id); graph.auth = "delegated" with `regsync login`.
    #[arg(long, env = "REGSYNC_SIM_SIGN_IN_AS")]
    sign_in_as: Option<String>,
}

/// `--retired`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum RetiredMode {
    /// 410 Gone.
    Gone,
    /// 404 with a code that is not "not found".
    NoRoute,
    /// 403 notSupported.
    NotSupported,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let sim = match Sim::start(args.listen).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("regsync-sim: cannot listen on {}: {e}", args.listen);
            return std::process::ExitCode::FAILURE;
        }
    };
    sim.seed(args.meetings);
    let open: Vec<SimMeeting> = (1..=args.meetings)
        .map(SimMeeting::generated)
        .filter(|m| m.status == "active" && m.allowed_registrant == "everyone")
        .collect();
    for i in 0..if open.is_empty() { 0 } else { args.registrants } {
        sim.upsert_registrant(regsync_sim::SimRegistrant::new(&open[i % open.len()].id, i / open.len() + 1));
    }
    if args.webinars {
        for m in (1..=args.meetings).map(SimMeeting::generated) {
            sim.put_webinar(&m.online_meeting_id, "published");
        }
    }
    sim.list_by_reference(args.by_reference);
    if args.platform_oauth_lifetime_secs > 0 {
        sim.require_platform_oauth(args.platform_oauth_lifetime_secs);
    }
    if let Some(path) = &args.trust_certificate {
        match std::fs::read_to_string(path) {
            Ok(pem) => sim.trust_certificate(&pem),
            Err(e) => {
                eprintln!("regsync-sim: cannot read --trust-certificate {}: {e}", path.display());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = &args.federated_token_file {
        if let Err(e) = std::fs::write(path, sim.federated_assertion()) {
            eprintln!("regsync-sim: cannot write --federated-token-file {}: {e}", path.display());
            return std::process::ExitCode::FAILURE;
        }
    }
    sim.retire_api(args.retired.map(|mode| match mode {
        RetiredMode::Gone => Retirement::Gone,
        RetiredMode::NoRoute => Retirement::NoRoute,
        RetiredMode::NotSupported => Retirement::NotSupported,
    }));
    if let Some(oid) = &args.sign_in_as {
        sim.sign_in_every_device_code_as(oid);
    }
    sim.set_rates(FaultRates {
        throttle: args.throttle_rate,
        retry_after_secs: args.retry_after_secs,
        error: args.error_rate,
        lost_response: args.lost_response_rate,
        latency: Duration::from_millis(args.latency_ms),
        timeout: args.timeout_rate,
        timeout_delay: Duration::from_millis(args.timeout_delay_ms),
    });
    // Before the banner: whoever read it may stop us at once.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            eprintln!("regsync-sim: cannot watch SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Written once and errors ignored: a reader that stops after the first
    // line must not bring the simulator down.
    let addr = sim.addr();
    let at = sim.endpoints();
    let banner = format!(
        "regsync-sim listening on http://{addr}\n  source.base_url     = {}\n  graph.base_url      = {}\n  \
         graph.authority_url = {}\n  stats               = http://{addr}/_sim/stats\n  \
         add or change        POST http://{addr}/_sim/meetings (JSON), cancel: POST /_sim/meetings/ID/cancel\n",
        at.platform, at.graph, at.authority,
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout(), banner.as_bytes());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    std::process::ExitCode::SUCCESS
}
