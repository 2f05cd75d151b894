//! A stateful simulator of the three remote services regsync talks to, over
//! real HTTP on loopback: the platform's meeting list (`/platform`), the
//! identity platform's token endpoint (`/login`) and the Graph registration
//! endpoints (`/graph/beta`), faithful to Microsoft's documentation of them.
//! The integration tests, `regsync-sim` and `regsync demo` all use it. It
//! keeps a log of every Graph request so tests can assert exactly-once from
//! the server's side, and takes injected faults.
//!
//! [`devdb`] is the fourth stand-in: a throw-away PostgreSQL cluster.
//!
//! This package imports nothing from regsync, and regsync's daemon does not
//! depend on it: only its tests, `regsync demo` (feature `demo`) and the
//! benchmark do.
#![warn(missing_docs)]

pub mod devdb;
mod directory;
mod faults;
mod graph;
mod identity;
mod people;
mod platform;
pub mod profiles;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use directory::{join_url_of, upn_of, LookupRequest};
pub use faults::{Fault, FaultRates, Retirement, TokenFault};
pub use graph::{Arrival, GraphRequest, Registration};
pub use identity::{DeviceAnswer, FEDERATED_AUDIENCE, FEDERATED_ISSUER, FEDERATED_SUBJECT, GRAPH_AUDIENCE};
pub use people::{
    GraphRegistrant, PeopleRequest, RegistrationConfig, SimAttendee, SimQuestion, SimRegistrant, SimReport, SimWebinar,
    WebinarRegistration, WriteBack,
};
pub use platform::{signature as webhook_signature, Delivery as WebhookDelivery, PageFault, SimMeeting};

/// The app credentials the simulator accepts.
pub const TENANT: &str = "sim-tenant";
/// See [`TENANT`].
pub const CLIENT_ID: &str = "sim-client";
/// See [`TENANT`].
pub const CLIENT_SECRET: &str = "sim-client-secret-value";

/// An app token from the simulator at `base` (`http://host:port`), as
/// regsync's client credentials get one: for calling its Graph directly.
///
/// # Errors
/// The token endpoint did not answer with a token.
pub async fn app_token(http: &reqwest::Client, base: &str) -> reqwest::Result<String> {
    let answer: serde_json::Value = http
        .post(format!("{base}/login/{TENANT}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["access_token"].as_str().unwrap_or_default().to_owned())
}

/// The platform app credentials the simulator's OAuth endpoint accepts.
pub const PLATFORM_CLIENT_ID: &str = "sim-platform-app";
/// See [`PLATFORM_CLIENT_ID`].
pub const PLATFORM_CLIENT_SECRET: &str = "sim-platform-secret-value";

/// Requests arriving this soon after a 429 were already under way.
pub const RETRY_AFTER_TOLERANCE: Duration = Duration::from_millis(100);

/// Everything the simulator holds.
#[derive(Default)]
pub(crate) struct State {
    pub(crate) platform: platform::Listing,
    /// Every Graph request, when it arrived, by its `client-request-id`.
    pub(crate) arrivals: Vec<graph::Arrival>,
    /// Access tokens issued: `None` for the app, the user's `oid` for a
    /// signed-in user.
    pub(crate) tokens: HashMap<String, Option<String>>,
    pub(crate) identity: identity::Identity,
    pub(crate) people: people::People,
    pub(crate) tokens_issued: u64,
    pub(crate) token_faults: VecDeque<TokenFault>,
    /// How long the token endpoint takes to answer.
    pub(crate) token_delay: Duration,
    /// `Retry-After` sent with token faults.
    pub(crate) token_retry_after: Option<String>,
    /// Token requests received.
    pub(crate) token_requests: u64,
    /// `expires_in` of issued tokens, when not the usual 3599 s.
    pub(crate) token_lifetime: Option<u64>,
    pub(crate) online_meetings: HashSet<(String, String)>,
    pub(crate) forbidden_organizers: HashSet<String>,
    /// UPNs (lower case) given to another user: the user they name now.
    pub(crate) reassigned_upns: HashMap<String, String>,
    /// The join-link `$filter` answers every meeting of the organizer, as
    /// it has been seen to misbehave.
    pub(crate) misfilter: bool,
    /// Signed-in users whose every access token Graph refuses (401), fresh
    /// or not: their account or consent changed.
    pub(crate) refused_users: HashSet<String>,
    /// Organizers Graph no longer knows (they left the tenant).
    pub(crate) departed_organizers: HashSet<String>,
    pub(crate) registrations: HashMap<(String, String), Registration>,
    pub(crate) allow_duplicates: bool,
    pub(crate) faults: VecDeque<(Option<&'static str>, Fault)>,
    pub(crate) rates: FaultRates,
    pub(crate) log: Vec<GraphRequest>,
    /// Until then every Graph request is answered 429 with this Retry-After.
    pub(crate) storm: Option<(tokio::time::Instant, String)>,
    /// The Retry-After window announced last: (announced at, until).
    pub(crate) throttle_window: Option<(tokio::time::Instant, tokio::time::Instant)>,
    pub(crate) next_id: u64,
    /// Every user and meeting lookup.
    pub(crate) lookups: Vec<directory::LookupRequest>,
    pub(crate) retired: Option<Retirement>,
    /// How far Graph's `Date` header is from this machine's clock.
    pub(crate) clock_skew: Option<Duration>,
}

/// What the simulator was asked, for `GET /_sim/stats` and assertions.
#[derive(Debug, Clone, Serialize, serde::Deserialize, Default, PartialEq, Eq)]
pub struct Stats {
    /// Graph requests by `METHOD STATUS` (status 0: no answer).
    pub requests: std::collections::BTreeMap<String, u64>,
    /// External registrations held now.
    pub registrations: usize,
    /// POSTs that arrived while a registration existed for the meeting.
    pub posts_while_registered: u64,
    /// Graph requests that arrived inside a Retry-After window it announced,
    /// more than [`RETRY_AFTER_TOLERANCE`] after announcing it (requests
    /// already under way when it answered 429 are not the client's fault).
    pub requests_inside_retry_after: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Token requests received, answered or refused.
    pub token_requests: u64,
    /// Meetings in the platform's list.
    pub platform_meetings: usize,
    /// User and meeting lookups (resolving e-mails and join links).
    #[serde(default)]
    pub lookups: u64,
    /// Refresh grants answered with new tokens.
    #[serde(default)]
    pub refreshes: u64,
    /// Refresh tokens presented a second time (each revokes its chain).
    #[serde(default)]
    pub refresh_reuses: u64,
    /// Device-code polls sooner than the interval asked.
    #[serde(default)]
    pub device_polls_too_soon: u64,
    /// Graph requests about registrants and webinar registrations.
    #[serde(default)]
    pub people_requests: u64,
    /// Registrants Graph holds on meetings.
    #[serde(default)]
    pub registrants: usize,
    /// Write-backs the platform acknowledged.
    #[serde(default)]
    pub write_backs: u64,
}

/// The settings that point regsync at a simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// `source.base_url`.
    pub platform: String,
    /// `graph.base_url`.
    pub graph: String,
    /// `graph.authority_url`.
    pub authority: String,
}

impl Endpoints {
    /// For a simulator listening on `addr` (in this process or another).
    pub fn at(addr: SocketAddr) -> Self {
        Self {
            platform: format!("http://{addr}/platform"),
            graph: format!("http://{addr}/graph/beta"),
            authority: format!("http://{addr}/login"),
        }
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Clone)]
pub struct Sim {
    state: Arc<Mutex<State>>,
    addr: SocketAddr,
    /// Stops the server when the last handle is dropped.
    _stop: Arc<tokio_util::sync::DropGuard>,
}

impl Sim {
    /// Starts on `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let stop = CancellationToken::new();
        let router = Router::new()
            .merge(platform::routes())
            .merge(graph::routes())
            .merge(identity::routes())
            .merge(people::routes())
            .merge(directory::routes())
            .merge(profiles::routes())
            .with_state(state.clone());
        let router = graph::serve_batches(router)
            .layer(axum::middleware::from_fn_with_state(state.clone(), graph::record_arrival));
        tokio::spawn(serve(listener, router, stop.clone()));
        Ok(Self { state, addr, _stop: Arc::new(stop.drop_guard()) })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where regsync finds its three services.
    pub fn endpoints(&self) -> Endpoints {
        Endpoints::at(self.addr)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.lock().stats()
    }
}

impl State {
    pub(crate) fn upsert_meeting(&mut self, meeting: SimMeeting) {
        self.online_meetings.insert((meeting.organizer_id.clone(), meeting.online_meeting_id.clone()));
        self.platform.upsert(meeting);
    }

    pub(crate) fn new_id(&mut self) -> String {
        self.next_id += 1;
        uuid::Uuid::from_u128(0x5157_0000_0000_4000_8000_0000_0000_0000 | u128::from(self.next_id)).to_string()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats {
            registrations: self.registrations.values().filter(|r| r.is_external()).count(),
            tokens_issued: self.tokens_issued,
            token_requests: self.token_requests,
            platform_meetings: self.platform.len(),
            lookups: self.lookups.len() as u64,
            refreshes: self.identity.refreshes,
            refresh_reuses: self.identity.refresh_reuses,
            device_polls_too_soon: self.identity.polls_too_soon,
            people_requests: self.people.log.len() as u64,
            registrants: self.people.registrants.values().map(|r| r.len()).sum(),
            write_backs: self.people.write_backs.iter().filter(|w| w.status < 300).count() as u64,
            ..Stats::default()
        };
        for r in &self.log {
            *stats.requests.entry(format!("{} {}", r.method, r.status)).or_default() += 1;
            stats.posts_while_registered += u64::from(r.method == "POST" && r.registration_existed);
            stats.requests_inside_retry_after += u64::from(r.inside_retry_after);
        }
        stats
    }
}

/// The token of an `Authorization: Bearer …` header.
/// Graph's `Date` header, as the simulated Graph's clock shows it.
pub(crate) fn graph_date(s: &State) -> axum::http::HeaderValue {
    let now = std::time::SystemTime::now() + s.clock_skew.unwrap_or_default();
    httpdate::fmt_http_date(now).parse().expect("an HTTP date is a valid header value")
}

pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "))
}

/// A connection's handle to close itself without answering.
#[derive(Clone)]
pub(crate) struct DropConnection(pub(crate) Arc<Notify>);

/// Serves each connection itself (not `axum::serve`) so a handler can close
/// its connection mid-request: "Graph acted, the response was lost".
async fn serve(listener: TcpListener, router: Router, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let kill = Arc::new(Notify::new());
        let service = router.clone().layer(axum::Extension(DropConnection(kill.clone())));
        let stop = stop.clone();
        tokio::spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::select! {
                _ = connection => {}
                _ = kill.notified() => {}
                _ = stop.cancelled() => {}
            }
        });
    }
}
