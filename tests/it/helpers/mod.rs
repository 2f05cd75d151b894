//! The test harness: a real PostgreSQL (DATABASE_URL, or a throw-away
//! cluster started once per test binary), a fresh database per test, the
//! simulator on a loopback port, and the real engine wired as `app` wires it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use regsync::app::demo::simulator_settings;
use regsync::config::Settings;
use regsync::store;
use regsync::sync::{self, Ctx, ReconcileReport, TickReport};
use regsync_sim::devdb;
use regsync_sim::{GraphRequest, Sim, SimMeeting};
use sqlx::{ConnectOptions, PgPool, Row};
use tokio_util::sync::CancellationToken;

pub mod lab;
pub mod netns;
mod process;
pub mod relay;
pub mod timeliness;
pub use process::*;

struct Server {
    url: String,
    _cluster: Option<devdb::Cluster>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) {
        Some(url) => Server { url, _cluster: None },
        None => {
            let cluster = devdb::Cluster::start().expect("a throw-away PostgreSQL (or set DATABASE_URL)");
            Server { url: cluster.url().to_owned(), _cluster: Some(cluster) }
        }
    })
}

/// Where the test server's Unix socket may be: its own directory when the
/// tests started it, else the usual places.
pub fn socket_dirs() -> Vec<std::path::PathBuf> {
    let own = server()._cluster.as_ref().map(|c| c.socket_dir().to_path_buf());
    own.into_iter().chain(["/var/run/postgresql", "/tmp"].map(std::path::PathBuf::from)).collect()
}

/// The test server's URL (its `postgres` database).
pub async fn server_url() -> String {
    tokio::task::spawn_blocking(|| server().url.clone()).await.expect("test server")
}

/// With `TEST_LOG` set (to a filter such as `debug` or
/// `regsync=trace`, or `1` for `info`), regsync's logs go to the test's
/// output: shown for a failing test, or for all with `--nocapture`.
/// `regsync` processes a test starts log to their own stderr as usual.
fn log_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(filter) = std::env::var("TEST_LOG") else { return };
        let filter = if filter == "1" { "info".to_owned() } else { filter };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .compact()
            .try_init();
    });
}

/// A fresh, empty database on the test server; returns its URL.
pub async fn fresh_database() -> String {
    log_if_asked();
    let url = server_url().await;
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a Postgres URL");
    let name = format!("regsync_t_{}", uuid::Uuid::new_v4().simple());
    let mut admin = options.clone().connect().await.expect("connect to the test server");
    store::recreate_database(&mut admin, &name).await.expect("create the test database");
    options.database(&name).to_url_lossy().to_string()
}

/// One test's world.
pub struct TestApp {
    pub sim: Sim,
    pub pool: PgPool,
    pub settings: Settings,
    pub ctx: Arc<Ctx>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the world, letting the test change the settings first.
pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    let sim = Sim::start(([127, 0, 0, 1], 0).into()).await.expect("simulator");
    spawn_app_against(sim, fresh_database().await, change).await
}

/// Starts the world against a simulator already running and database
/// `db_url` (reached another way, say).
pub async fn spawn_app_against(sim: Sim, db_url: String, change: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = simulator_settings(&sim, &db_url);
    settings.sync.backoff_base_ms = 1;
    settings.sync.backoff_max_ms = 1;
    change(&mut settings);
    settings.validate().expect("test settings are valid");
    let pool = regsync::app::connect_and_migrate(&settings).await.expect("migrated");
    let ctx = regsync::app::context(Arc::new(settings.clone()), pool.clone(), Arc::default(), CancellationToken::new())
        .expect("context");
    TestApp { sim, pool, settings, ctx }
}

impl TestApp {
    /// A second replica on the same database and simulator.
    pub fn replica(&self) -> Arc<Ctx> {
        regsync::app::context(
            Arc::new(self.settings.clone()),
            self.pool.clone(),
            Arc::default(),
            CancellationToken::new(),
        )
        .expect("context")
    }

    pub async fn tick(&self) -> TickReport {
        tokio::time::timeout(Duration::from_secs(60), sync::tick(&self.ctx))
            .await
            .expect("tick finished")
            .expect("tick ran")
    }

    pub async fn reconcile(&self) -> ReconcileReport {
        tokio::time::timeout(Duration::from_secs(60), sync::reconcile_due(&self.ctx))
            .await
            .expect("reconcile finished")
            .expect("reconcile ran")
    }

    /// Reconciles until no meeting or registrant is due now, waiting out
    /// short retry delays.
    pub async fn settle(&self) {
        for _ in 0..200 {
            self.reconcile().await;
            let open: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM meetings WHERE state IN ('pending', 'retrying', 'in_flight'))
                      + (SELECT count(*) FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight'))",
            )
            .fetch_one(&self.pool)
            .await
            .expect("count");
            if open == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let open: Vec<(String, String, i32, Option<String>)> = sqlx::query_as(
            "SELECT external_id, state, attempts, last_error FROM meetings WHERE state IN ('pending', 'retrying', 'in_flight')
             UNION ALL
             SELECT external_id, state, attempts, last_error FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight')",
        )
        .fetch_all(&self.pool)
        .await
        .expect("open rows");
        panic!("meetings or registrants did not settle: {open:?}");
    }

    /// A row of `ops.meeting_status`.
    pub async fn status(&self, external_id: &str) -> MeetingStatus {
        let row = sqlx::query(
            "SELECT state, registration_id, attempts, last_error, last_http_status, needs_lookup, desired
             FROM ops.meeting_status WHERE external_id = $1",
        )
        .bind(external_id)
        .fetch_one(&self.pool)
        .await
        .expect("meeting row");
        MeetingStatus {
            state: row.get("state"),
            registration_id: row.get("registration_id"),
            attempts: row.get("attempts"),
            last_error: row.get("last_error"),
            last_http_status: row.get("last_http_status"),
            needs_lookup: row.get("needs_lookup"),
            desired: row.get("desired"),
        }
    }

    /// The simulator's requests for one platform meeting.
    pub fn requests_for(&self, meeting: &SimMeeting) -> Vec<GraphRequest> {
        self.sim
            .log()
            .into_iter()
            .filter(|r| r.meeting == meeting.online_meeting_id && r.organizer == meeting.organizer_id)
            .collect()
    }

    /// `METHOD STATUS` of each request for a meeting, in order.
    pub fn calls_for(&self, meeting: &SimMeeting) -> Vec<String> {
        self.requests_for(meeting).iter().map(|r| format!("{} {}", r.method, r.status)).collect()
    }

    /// Lists `m` on the platform.
    pub fn listed(&self, m: SimMeeting) -> SimMeeting {
        self.sim.upsert_meeting(m.clone());
        m
    }

    /// Lists `m` on the platform and runs a cycle: it is registered.
    pub async fn synced(&self, m: SimMeeting) -> SimMeeting {
        self.sim.upsert_meeting(m.clone());
        self.tick().await;
        m
    }

    /// Lists `m` on the platform, polls it in and claims it, as a worker
    /// that is about to die holding it.
    pub async fn claim_listed(&self, m: &SimMeeting) -> regsync::store::Claimed {
        self.sim.upsert_meeting(m.clone());
        sync::ingest::poll(&self.ctx).await.expect("poll");
        let ttl = self.settings.sync.lease_ttl();
        let mut claimed = store::claims::claim_due(&self.pool, 1, ttl, 8, uuid::Uuid::new_v4()).await.expect("claim");
        assert_eq!(claimed.len(), 1, "the listed meeting is due");
        claimed.remove(0)
    }

    /// Commits the intent to create `claimed`'s registration, as a worker
    /// does right before its POST.
    pub async fn commit_create_intent(&self, claimed: &regsync::store::Claimed) -> regsync::store::SendGate {
        let ttl = self.settings.sync.lease_ttl();
        let create = Some(regsync::store::Intent::Create(&claimed.location));
        store::send::prepare_send(&self.pool, claimed, create, None, ttl, ttl).await.expect("the gate ran")
    }

    pub async fn expire_leases(&self) {
        expire_leases(&self.pool).await;
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.expect("scalar query")
    }
}

#[derive(Debug, Clone)]
pub struct MeetingStatus {
    pub state: String,
    pub registration_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub last_http_status: Option<i32>,
    pub needs_lookup: bool,
    pub desired: String,
}

/// An outcome that records a meeting as synced with nothing at Graph.
pub fn synced_outcome() -> regsync::store::Outcome {
    regsync::store::Outcome {
        state: regsync::domain::RowState::Synced,
        actual: None,
        needs_lookup: false,
        lookup_at: None,
        attempts: 0,
        next_attempt_in: Duration::ZERO,
        last_error: None,
        last_http_status: None,
        error_category: None,
        checked: false,
        lookup_settle: Duration::ZERO,
    }
}

/// Whether `check` comes true within `limit`, asked every 50 ms.
pub async fn eventually(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One number from the database at `db`: a count, usually.
pub async fn scalar_at(db: &str, sql: &str) -> i64 {
    let pool = PgPool::connect(db).await.expect("the test database");
    sqlx::query_scalar(sql).fetch_one(&pool).await.expect("scalar query")
}

/// Every lease runs out now, as if its worker had died.
pub async fn expire_leases(pool: &PgPool) {
    sqlx::query(
        "UPDATE meetings SET lease_expires_at = now() - interval '1 second' WHERE lease_expires_at IS NOT NULL",
    )
    .execute(pool)
    .await
    .expect("leases expire");
}

/// A meeting open to everyone with ids derived from `n`.
pub fn meeting(n: usize) -> SimMeeting {
    SimMeeting::new(&format!("evt-{n}"), &format!("org-{}", n % 3), &format!("MSp{n:04}"))
}
