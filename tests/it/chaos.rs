//! The chaos run (CI size): three `regsync run` replicas against their own
//! PostgreSQL, Graph injecting throttling, 5xx, timeouts and lost
//! responses, replicas killed with SIGKILL at random and restarted, every
//! regsync database session terminated after each kill, the postmaster
//! frozen for 5 s, and PostgreSQL crashed and restarted mid-run (every
//! replica must be ready again within 15 s of it). Midway, meetings with
//! people change audience (Graph cannot update it: the registration is
//! re-created, its registrants with it) or are cancelled, and some of those
//! are activated again. Every valid meeting must end registered exactly once
//! by the simulator's own log (twice for a changed audience), and every
//! registrant of the first 50 enrolled once at the registration their
//! meeting holds now, with that link written back; nobody is left at a
//! cancelled meeting.
//!
//! Size: `REGSYNC_CHAOS_MEETINGS` (default 300) and `REGSYNC_CHAOS_SECS`
//! (the kill phase, default 30).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use regsync_sim::devdb::Cluster;
use regsync_sim::{FaultRates, Sim, SimMeeting};
use sqlx::ConnectOptions;

use crate::helpers::{eventually, exit_within, free_port, send_signal, Signal};

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A `regsync run` process, with optional extra environment (libfaketime).
pub struct Replica {
    pub child: Option<Child>,
    pub listen: String,
    pub log: PathBuf,
    pub starts: u32,
    pub extra_env: Vec<(String, String)>,
    /// The address its server listens on (a port is picked at each start).
    pub host: std::net::IpAddr,
}

impl Replica {
    pub fn new(log: PathBuf) -> Self {
        let host = std::net::Ipv4Addr::LOCALHOST.into();
        Self { child: None, listen: format!("{host}:{}", free_port()), log, starts: 0, extra_env: Vec::new(), host }
    }

    pub fn start(&mut self, db: &str, sim: &Sim) {
        // A fresh port each start: while a replica was down, its old port may
        // have been handed out as another connection's ephemeral port.
        self.listen = format!("{}:{}", self.host, free_port());
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_regsync"));
        let child = command
            .args(["run", "--log-format", "json"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(crate::helpers::simulator_env(db, sim))
            .env("REGSYNC__GRAPH__TIMEOUT_MS", "500")
            .env("REGSYNC__GRAPH__MAX_REQUESTS_PER_SECOND", "0")
            // Two calls in flight per replica: with a 429 on one request in
            // five, every call under way when one comes back is wasted.
            .env("REGSYNC__GRAPH__MAX_CONCURRENCY", "2")
            .env("REGSYNC__SYNC__LEASE_TTL_MS", "2000")
            .env("REGSYNC__SYNC__POLL_SCHEDULE", "*/2 * * * * *")
            .env("REGSYNC__SYNC__RECONCILE_INTERVAL_MS", "100")
            .env("REGSYNC__SYNC__BACKOFF_BASE_MS", "100")
            .env("REGSYNC__SYNC__BACKOFF_MAX_MS", "2000")
            .env("REGSYNC__SYNC__MAX_ATTEMPTS", "40")
            .env("REGSYNC__DATABASE__ACQUIRE_TIMEOUT_MS", "2000")
            .env("REGSYNC__SERVER__LISTEN", &self.listen)
            .env("REGSYNC__SERVER__READY_MAX_POLL_AGE_SECS", "60")
            .envs(self.extra_env.iter().map(|(k, v)| (k, v)))
            .current_dir(std::env::temp_dir())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("regsync run starts");
        self.child = Some(child);
        self.starts += 1;
    }

    pub fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            send_signal(child, signal);
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        send_signal(&child, Signal::SIGTERM);
        if let Some(status) = exit_within(&mut child, Duration::from_secs(30)) {
            return Some(status);
        }
        let _ = child.kill();
        None
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn ready(listen: &str) -> bool {
    let probe = reqwest::Client::new().get(format!("http://{listen}/readyz")).timeout(Duration::from_secs(3)).send();
    probe.await.is_ok_and(|r| r.status().is_success())
}

async fn open_registrants(pool: &sqlx::PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT count(*) FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight')")
        .fetch_one(pool)
        .await
        .ok()
}

pub async fn open_meetings(pool: &sqlx::PgPool) -> Option<i64> {
    sqlx::query_scalar("SELECT count(*) FROM meetings WHERE state IN ('pending', 'retrying', 'in_flight')")
        .fetch_one(pool)
        .await
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_killed_at_random_with_a_database_crash_register_every_meeting_exactly_once() {
    // Arrange: a database of our own (this test crashes it), the simulator
    // with the fault mix, and three replicas.
    let meetings = env_number("REGSYNC_CHAOS_MEETINGS", 300) as usize;
    let kill_phase = Duration::from_secs(env_number("REGSYNC_CHAOS_SECS", 30));
    let mut cluster = tokio::task::spawn_blocking(Cluster::start).await.expect("joined").expect("own PostgreSQL");
    let admin_options: sqlx::postgres::PgConnectOptions = cluster.url().parse().expect("url");
    let mut admin = admin_options.connect().await.expect("admin connection");
    regsync::store::recreate_database(&mut admin, "regsync_chaos").await.expect("database");
    drop(admin);
    let admin_options = admin_options.database("postgres");
    let db = admin_options.clone().database("regsync_chaos").to_url_lossy().to_string();
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("sim");
    sim.seed(meetings);
    // Two people for each of the first 50 active meetings, enrolled and
    // written back through the same kills and faults.
    let with_people: Vec<SimMeeting> = (1..=meetings)
        .map(SimMeeting::generated)
        .filter(|m| m.status == "active" && m.allowed_registrant == "everyone")
        .take(50)
        .collect();
    // Members of the organization, so they may stay when the audience narrows.
    let people: Vec<_> =
        sim.seed_registrants(&with_people, 2).into_iter().map(regsync_sim::SimRegistrant::in_organization).collect();
    for p in &people {
        sim.upsert_registrant(p.clone());
    }
    let (narrowed, cancelled, reactivated) = (&with_people[0..5], &with_people[5..10], &with_people[5..7]);
    let (mut changed_midway, mut reactivated_late) = (false, false);
    sim.set_rates(FaultRates {
        throttle: 0.2,
        retry_after_secs: 0.5,
        error: 0.1,
        lost_response: 0.05,
        timeout: 0.05,
        timeout_delay: Duration::from_millis(1_500),
        latency: Duration::from_millis(5),
    });
    let logs = std::env::temp_dir().join(format!("regsync-chaos-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut replicas: Vec<Replica> = (0..3).map(|i| Replica::new(logs.join(format!("replica-{i}.log")))).collect();
    for r in &mut replicas {
        r.extra_env.extend(
            [
                ("REGSYNC__REGISTRANTS__ENABLED", "true"),
                // One listing of everyone: a list per meeting would cost a
                // request per meeting on every poll.
                ("REGSYNC__REGISTRANTS__PATH", "/registrants"),
                ("REGSYNC__WRITEBACK__URL", "/meetings/{meeting_id}/registrants/{registrant_id}/join-link"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        r.start(&db, &sim);
    }

    // Act: kill replicas at random; crash the database once, a third in.
    let started = Instant::now();
    let mut kills = 0;
    let mut db_crashed = false;
    let mut db_frozen = false;
    let mut sessions_killed = 0;
    let mut not_ready_during_outage = None;
    let mut ready_again_after = None;
    while started.elapsed() < kill_phase || kills < 10 {
        let pause = rand::rng().random_range(1_000..2_500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let victim = rand::rng().random_range(0..replicas.len());
        replicas[victim].kill();
        kills += 1;
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(100..1_000))).await;
        replicas[victim].start(&db, &sim);
        // Kill every regsync session; the pools must reconnect on their own.
        if let Ok(Ok(mut admin)) = tokio::time::timeout(Duration::from_secs(5), admin_options.connect()).await {
            let killed: Option<i64> = sqlx::query_scalar(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'regsync_chaos'",
            )
            .fetch_one(&mut admin)
            .await
            .ok();
            sessions_killed += u64::from(killed.is_some());
        }
        if !changed_midway && started.elapsed() > kill_phase / 2 {
            changed_midway = true;
            for m in narrowed {
                sim.update_meeting(&m.id, |m| m.allowed_registrant = "organization".into());
            }
            for m in cancelled {
                sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
            }
        }
        if !reactivated_late && started.elapsed() > kill_phase * 3 / 4 {
            reactivated_late = true;
            for m in reactivated {
                sim.update_meeting(&m.id, |m| m.status = "active".into());
            }
        }
        if !db_frozen && started.elapsed() > kill_phase * 2 / 3 {
            db_frozen = true;
            cluster.freeze(true);
            tokio::time::sleep(Duration::from_secs(5)).await;
            cluster.freeze(false);
        }
        if !db_crashed && started.elapsed() > kill_phase / 3 {
            db_crashed = true;
            cluster.crash();
            tokio::time::sleep(Duration::from_secs(2)).await;
            // A replica that has been up a while (not the one just restarted).
            let alive = replicas[(victim + 1) % replicas.len()].listen.clone();
            not_ready_during_outage =
                reqwest::get(format!("http://{alive}/readyz")).await.ok().map(|r| r.status().as_u16());
            cluster = tokio::task::spawn_blocking(move || {
                cluster.start_again().expect("PostgreSQL back");
                cluster
            })
            .await
            .expect("joined");
            // Every replica answers /readyz (its pool reaches the
            // database again) within 15 s of PostgreSQL accepting connections.
            let back = Instant::now();
            for r in &replicas {
                while !ready(&r.listen).await {
                    assert!(
                        back.elapsed() < Duration::from_secs(15),
                        "{} not ready 15 s after PostgreSQL came back",
                        r.listen
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            ready_again_after = Some(back.elapsed());
        }
    }
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    let still_cancelled: Vec<&SimMeeting> = cancelled.iter().filter(|m| !reactivated.contains(m)).collect();
    let valid: Vec<SimMeeting> = (1..=meetings)
        .map(SimMeeting::generated)
        .filter(|m| m.status == "active" && !still_cancelled.iter().any(|c| c.id == m.id))
        .collect();
    let quiet = eventually(Duration::from_secs(240), async || {
        sim.stats().registrations == valid.len()
            && open_meetings(&pool).await == Some(0)
            && open_registrants(&pool).await == Some(0)
    })
    .await;
    assert!(quiet, "not quiescent: {}/{} registered", sim.stats().registrations, valid.len());
    let exits: Vec<_> = replicas.iter_mut().map(|r| r.terminate()).collect();

    // Assert
    let log = sim.log();
    for m in &valid {
        let acted_posts = log
            .iter()
            .filter(|r| {
                r.method == "POST" && r.acted && r.organizer == m.organizer_id && r.meeting == m.online_meeting_id
            })
            .count();
        // A new audience, or a cancellation and a return, re-creates the
        // registration if it was made before the change; never a second one
        // while one exists (checked below).
        let remade = narrowed.iter().chain(reactivated).any(|n| n.id == m.id);
        let expected = if remade { 1..=2 } else { 1..=1 };
        assert!(expected.contains(&acted_posts), "{}: {acted_posts} registrations created", m.id);
        let held = sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered").id;
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT registration_id FROM ops.meeting_status WHERE external_id = $1")
                .bind(&m.id)
                .fetch_one(&pool)
                .await
                .expect("row");
        assert_eq!(recorded.as_deref(), Some(held.as_str()), "{}: the recorded id is Graph's", m.id);
    }
    for m in narrowed {
        let held = sim.registration(&m.organizer_id, &m.online_meeting_id).expect("registered");
        assert_eq!(held.allowed_registrant, "organization", "{}: the new audience", m.id);
    }
    for m in &still_cancelled {
        assert!(sim.registration(&m.organizer_id, &m.online_meeting_id).is_none(), "{}: cancelled", m.id);
        assert!(sim.graph_registrants(&m.organizer_id, &m.online_meeting_id).is_empty(), "{}", m.id);
    }
    // Every person of a meeting that is active now: one registrant at the
    // registration it holds now, and the platform holds that link.
    let write_backs = sim.write_backs();
    for p in people.iter().filter(|p| !still_cancelled.iter().any(|c| c.id == p.meeting_id)) {
        let m = with_people.iter().find(|m| m.id == p.meeting_id).expect("their meeting");
        let held = sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
        let link = &held.iter().find(|r| r.id == p.id).unwrap_or_else(|| panic!("{}: enrolled", p.id)).join_web_url;
        let last = write_backs.iter().rev().find(|w| w.registrant_id == p.id && w.status == 200);
        assert_eq!(
            last.map(|w| w.body["join_web_url"].as_str()),
            Some(Some(link.as_str())),
            "{}: link written back",
            p.id
        );
    }
    let stats = sim.stats();
    println!(
        "chaos: {meetings} meetings, {kills} kills, {} Graph requests, {:?} by status, every replica ready {:?} after PostgreSQL was back",
        log.len(),
        stats.requests,
        ready_again_after.unwrap_or_default()
    );
    assert_eq!(stats.posts_while_registered, 0, "no POST while a registration existed");
    assert_eq!(stats.requests_inside_retry_after, 0, "no request inside a Retry-After window");
    assert!(log.len() <= 3 * meetings, "{} Graph requests for {meetings} meetings", log.len());
    assert!(kills >= 10 && db_crashed && db_frozen && sessions_killed >= 10);
    assert_eq!(not_ready_during_outage, Some(503), "/readyz reports the database outage");
    for (i, exit) in exits.iter().enumerate() {
        assert!(exit.is_some_and(|e| e.success()), "replica {i} stopped cleanly on SIGTERM: {exit:?}");
    }
    for r in &replicas {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        assert!(!text.contains("panicked"), "a replica panicked: {}", r.log.display());
    }
    let _ = std::fs::remove_dir_all(logs);
}
