//! The `regsync` command line.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use regsync::app;
use regsync::config::{Scope, Settings};
use regsync::telemetry::{self, LogFormat};

/// Keeps Teams external meeting registration in step with an event platform.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (default: config/default.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "REGSYNC__LOG__FORMAT")]
    log_format: LogFormat,
    /// `run` and `once` do not apply migrations (`regsync migrate` must
    /// have); the same as `database.migrate = false`.
    #[arg(long, global = true)]
    no_migrate: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply database migrations.
    Migrate,
    /// Run the daemon until SIGTERM/SIGINT.
    Run,
    /// One poll, then reconcile until nothing is due now.
    Once,
    /// Meetings per state and recent failures (reads only).
    Status,
    /// A dry run: polls the platform and prints what the next cycle would
    /// do for each meeting, writing nothing at Graph or in the database.
    Plan,
    /// Make a meeting, every failed row, or an organizer's rows due again.
    Retry {
        /// The platform's meeting id.
        #[arg(required_unless_present_any = ["failed", "organizer"], conflicts_with_all = ["failed", "organizer"])]
        external_id: Option<String>,
        /// Every failed meeting and registrant.
        #[arg(long, conflicts_with = "organizer")]
        failed: bool,
        /// One organizer (their object id): ends their condition in
        /// `ops.organizers` and makes their waiting and failed rows due.
        #[arg(long, value_name = "ID")]
        organizer: Option<String>,
    },
    /// Sign an organizer in (graph.auth = "delegated"): prints a code to
    /// enter at Microsoft's sign-in page, waits, and stores the sign-in
    /// sealed in the database.
    Login,
    /// Check every prerequisite (configuration, database, token,
    /// permissions, cloud, the organizer's meetings, the registration API,
    /// the clock): one line each with the fix; exits non-zero if any fails.
    /// Changes nothing at Graph.
    Doctor {
        /// The organizer (object id) whose meetings are read.
        #[arg(long)]
        organizer: Option<String>,
        /// The online meeting id whose registration is read.
        #[arg(long)]
        meeting: Option<String>,
    },
    /// Remove an organizer's sign-in.
    Logout {
        /// The organizer's object id (as `regsync status` lists it).
        organizer_id: String,
    },
    /// A full sync against the built-in simulator, with a throw-away database.
    Demo {
        /// Meetings the simulated platform lists.
        #[arg(long, default_value_t = 500)]
        meetings: usize,
        /// People the simulated platform registered, enrolled at Teams one
        /// by one with their join links written back (0: none).
        #[arg(long, default_value_t = 0)]
        registrants: usize,
        /// Keep the daemon and simulator running afterwards.
        #[arg(long)]
        keep_running: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    #[cfg(feature = "failpoints")]
    let _crash_points = fail::FailScenario::setup();
    // The demo and status print tables: only errors should interrupt them.
    let quiet = matches!(cli.command, Command::Demo { .. } | Command::Status | Command::Plan | Command::Doctor { .. });
    telemetry::init(cli.log_format, if quiet { "error" } else { "info" });
    match dispatch(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The steps that led here, then the error itself (`{:#}`): each
            // regsync error says its cause once, in its own message.
            eprintln!("regsync: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    if let Command::Demo { meetings, registrants, keep_running } = cli.command {
        return demo(meetings, registrants, keep_running).await;
    }
    if let Command::Doctor { organizer, meeting } = cli.command {
        let report =
            app::doctor::doctor(cli.config.as_deref(), app::doctor::DoctorOptions { organizer, meeting }).await;
        print!("{report}");
        match report.failures() {
            0 => return Ok(()),
            n => anyhow::bail!("{n} check(s) failed"),
        }
    }
    // Each command checks only the settings it uses.
    let scope = match cli.command {
        Command::Migrate | Command::Status | Command::Retry { .. } | Command::Logout { .. } => Scope::Database,
        _ => Scope::Everything,
    };
    let mut settings = Settings::load_for(cli.config.as_deref(), scope)?;
    settings.database.migrate &= !cli.no_migrate;
    match cli.command {
        Command::Migrate => app::migrate(&settings).await?,
        Command::Run => app::run(settings).await?,
        Command::Once => println!("{}", app::summary(&app::once(settings).await?)),
        Command::Status => print!("{}", app::status(&settings).await?),
        Command::Plan => print!("{}", app::plan(settings).await?),
        Command::Retry { external_id, organizer, .. } => {
            let what = match (external_id, organizer) {
                (Some(id), _) => app::RetryWhat::Meeting(id),
                (None, Some(organizer)) => app::RetryWhat::Organizer(organizer),
                (None, None) => app::RetryWhat::Failed,
            };
            let n = app::retry(&settings, &what).await?;
            println!("{n} meeting(s) or registrant(s) due again");
        }
        Command::Login => {
            let done = app::login(&settings, |prompt| {
                println!("{prompt}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            })
            .await?;
            println!("{done}");
        }
        Command::Logout { organizer_id } => println!("{}", app::logout(&settings, &organizer_id).await?),
        Command::Demo { .. } | Command::Doctor { .. } => unreachable!("handled above"),
    }
    Ok(())
}

#[cfg(feature = "demo")]
async fn demo(meetings: usize, registrants: usize, keep_running: bool) -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
    let options = app::demo::DemoOptions { meetings, registrants, keep_running, database_url, progress: true };
    app::demo::demo(options).await?;
    Ok(())
}

/// A production build leaves the simulator out; say how to get it.
#[cfg(not(feature = "demo"))]
async fn demo(_: usize, _: usize, _: bool) -> anyhow::Result<()> {
    anyhow::bail!("this build of regsync has no demo: run `cargo run --release --features demo -- demo`")
}
