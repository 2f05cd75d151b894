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
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use directory::{join_url_of, upn_of, LookupRequest};
pub use faults::{Fault, FaultRates, Retirement, TokenFault};
pub use graph::{GraphRequest, Registration};
pub use identity::{DeviceAnswer, FEDERATED_AUDIENCE, FEDERATED_ISSUER, FEDERATED_SUBJECT, GRAPH_AUDIENCE};
pub use people::{GraphRegistrant, PeopleRequest, SimRegistrant, SimWebinar, WebinarRegistration, WriteBack};
pub use platform::{PageFault, SimMeeting};

/// The app credentials the simulator accepts.
pub const TENANT: &str = "sim-tenant";
/// See [`TENANT`].
pub const CLIENT_ID: &str = "sim-client";
/// See [`TENANT`].
pub const CLIENT_SECRET: &str = "sim-client-secret-value";

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

    /// Adds or replaces a meeting in the platform's list; Graph learns of its
    /// online meeting.
    pub fn upsert_meeting(&self, meeting: SimMeeting) {
        self.lock().upsert_meeting(meeting);
    }

    /// Adds `n` generated meetings: every 7th for `organization`, every 10th
    /// cancelled.
    pub fn seed(&self, n: usize) {
        for i in 1..=n {
            self.upsert_meeting(SimMeeting::generated(i));
        }
    }

    /// Changes a meeting in the list; false if it is not there.
    pub fn update_meeting(&self, id: &str, change: impl FnOnce(&mut SimMeeting)) -> bool {
        let mut s = self.lock();
        let Some(meeting) = s.platform.get_mut(id) else { return false };
        change(meeting);
        let key = (meeting.organizer_id.clone(), meeting.online_meeting_id.clone());
        s.online_meetings.insert(key);
        true
    }

    /// Drops a meeting from the list (it "vanishes").
    pub fn remove_meeting(&self, id: &str) {
        self.lock().platform.remove(id);
    }

    /// Appends a raw JSON item (for bad-input tests).
    pub fn push_raw_item(&self, item: Value) {
        self.lock().platform.push_raw(item);
    }

    /// Appends an item as raw JSON text, served as it is (for input that a
    /// JSON value cannot hold, such as an unpaired UTF-16 surrogate).
    pub fn push_raw_text(&self, item: &str) {
        self.lock().platform.push_text(item.to_owned());
    }

    /// Fails the platform's page `index` (0-based) on every request.
    pub fn fail_page(&self, index: usize, fault: PageFault) {
        self.lock().platform.page_faults.insert(index, fault);
    }

    /// Clears page faults.
    pub fn heal_pages(&self) {
        self.lock().platform.page_faults.clear();
    }

    /// Queues a fault for the next Graph request (of `method`, if given).
    pub fn fail_next(&self, method: Option<&'static str>, fault: Fault) {
        self.lock().faults.push_back((method, fault));
    }

    /// Queues a fault for the next token request.
    pub fn fail_next_token(&self, fault: TokenFault) {
        self.lock().token_faults.push_back(fault);
    }

    /// Sends `Retry-After: {secs}` with the token faults from now on.
    pub fn token_retry_after(&self, secs: &str) {
        self.lock().token_retry_after = Some(secs.to_owned());
    }

    /// Makes the token endpoint answer only after `delay`.
    pub fn delay_tokens(&self, delay: Duration) {
        self.lock().token_delay = delay;
    }

    /// Makes issued tokens carry this `expires_in` (seconds).
    pub fn token_lifetime(&self, secs: u64) {
        self.lock().token_lifetime = Some(secs);
    }

    /// Sets random fault rates.
    pub fn set_rates(&self, rates: FaultRates) {
        self.lock().rates = rates;
    }

    /// Answers every Graph request 429 with `retry_after` (seconds) for `length`.
    pub fn throttle_all_for(&self, length: Duration, retry_after: &str) {
        self.lock().storm = Some((tokio::time::Instant::now() + length, retry_after.to_owned()));
    }

    /// Makes Graph answer 403 (no application access policy) for an organizer.
    pub fn forbid_organizer(&self, organizer: &str) {
        self.lock().forbidden_organizers.insert(organizer.to_owned());
    }

    /// The organizer leaves the tenant: Graph's online-meeting service
    /// answers 404 `UnknownError` for every call about their meetings, as it
    /// does for a user it cannot find.
    pub fn depart_organizer(&self, organizer: &str) {
        self.lock().departed_organizers.insert(organizer.to_owned());
    }

    /// The tenant gives `upn` to another user, `id` (a departed person's
    /// address reused).
    pub fn reassign_upn(&self, upn: &str, id: &str) {
        self.lock().reassigned_upns.insert(upn.to_lowercase(), id.to_owned());
    }

    /// Graph knows the organizer again (a wrong id fixed, a user restored).
    pub fn restore_organizer(&self, organizer: &str) {
        self.lock().departed_organizers.remove(organizer);
    }

    /// Graph has an online meeting for the organizer (one the platform does
    /// not list, say).
    pub fn add_online_meeting(&self, organizer: &str, meeting: &str) {
        self.lock().online_meetings.insert((organizer.to_owned(), meeting.to_owned()));
    }

    /// Forgets an online meeting: Graph answers 404 for it.
    pub fn forget_online_meeting(&self, organizer: &str, meeting: &str) {
        self.lock().online_meetings.remove(&(organizer.to_owned(), meeting.to_owned()));
    }

    /// When true, a POST over an existing registration replaces it (a
    /// duplicate) instead of answering 409: the strict oracle.
    pub fn allow_duplicates(&self, allow: bool) {
        self.lock().allow_duplicates = allow;
    }

    /// Puts a registration at Graph directly (Teams' own kind if `foreign`).
    pub fn put_registration(&self, organizer: &str, meeting: &str, allowed: &str, foreign: bool) -> String {
        let mut s = self.lock();
        let id = s.new_id();
        let odata_type = if foreign {
            "#microsoft.graph.meetingRegistration"
        } else {
            "#microsoft.graph.externalMeetingRegistration"
        };
        s.registrations.insert(
            (organizer.to_owned(), meeting.to_owned()),
            Registration { id: id.clone(), odata_type: odata_type.into(), allowed_registrant: allowed.into() },
        );
        id
    }

    /// Puts a registration at Graph whose body carries no `@odata.type`.
    pub fn put_untyped_registration(&self, organizer: &str, meeting: &str) -> String {
        let mut s = self.lock();
        let id = s.new_id();
        let registration =
            Registration { id: id.clone(), odata_type: String::new(), allowed_registrant: "everyone".into() };
        s.registrations.insert((organizer.to_owned(), meeting.to_owned()), registration);
        id
    }

    /// Registers `pem` as the app's certificate: assertions signed with its
    /// key are accepted.
    pub fn trust_certificate(&self, pem: &str) {
        self.lock().identity.certificate = Some(pem.to_owned());
    }

    /// A fresh assertion of the simulated external issuer that the app's
    /// federated credential trusts (what a workload identity projects).
    pub fn federated_assertion(&self) -> String {
        self.lock().identity.federated_assertion()
    }

    /// Every federated assertion handed out so far expires.
    pub fn expire_federated_assertions(&self) {
        self.lock().identity.expire_federated();
    }

    /// The app's application permissions in its tokens' `roles`.
    pub fn grant_roles(&self, roles: &[&str]) {
        self.lock().identity.roles = roles.iter().map(|r| (*r).to_owned()).collect();
    }

    /// What the next device-code polls answer, in order (then pending).
    pub fn script_device_code(&self, answers: Vec<DeviceAnswer>) {
        self.lock().identity.device_script = answers.into();
    }

    /// Every device-code sign-in that has no scripted answer left signs in
    /// as `oid` at its first poll (for the standalone simulator).
    pub fn sign_in_every_device_code_as(&self, oid: &str) {
        self.lock().identity.default_user = Some(oid.to_owned());
    }

    /// The `interval` (seconds) device-code answers ask for; polls sooner
    /// than it are answered `slow_down`.
    pub fn device_code_interval(&self, secs: u64) {
        self.lock().identity.device_interval = secs;
    }

    /// `expires_in` of signed-in users' access tokens.
    pub fn delegated_token_lifetime(&self, secs: u64) {
        self.lock().identity.delegated_lifetime = secs;
    }

    /// The next refresh grant is redeemed (its refresh token spent) but its
    /// answer is lost: the client sees 504.
    pub fn lose_next_refresh_answer(&self) {
        self.lock().identity.lose_refresh_answers += 1;
    }

    /// Revokes every sign-in of the user `oid` (their refresh tokens then
    /// answer `invalid_grant`).
    pub fn revoke_sign_in(&self, oid: &str) {
        self.lock().identity.revoke_user(oid);
    }

    /// Access tokens are issued for this Graph root (`aud`), as another
    /// cloud's identity platform would.
    pub fn token_audience(&self, audience: &str) {
        self.lock().identity.audience = audience.to_owned();
    }

    /// Graph's `Date` header runs this far ahead of this machine's clock.
    pub fn skew_graph_clock(&self, ahead: Duration) {
        self.lock().clock_skew = Some(ahead);
    }

    /// Makes every registration call answer as a retired or refusing API
    /// does (`None`: the API answers again).
    pub fn retire_api(&self, retirement: Option<Retirement>) {
        self.lock().retired = retirement;
    }

    /// Lists `registrant` on the platform (or changes it, by id).
    pub fn upsert_registrant(&self, registrant: SimRegistrant) {
        let mut s = self.lock();
        let list = &mut s.people.platform;
        match list.iter_mut().find(|r| r.id == registrant.id && r.meeting_id == registrant.meeting_id) {
            Some(existing) => *existing = registrant,
            None => list.push(registrant),
        }
    }

    /// Lists `registrant` once more, as a platform that repeats an item does.
    pub fn list_registrant_again(&self, registrant: SimRegistrant) {
        self.lock().people.platform.push(registrant);
    }

    /// Lists `n` registrants for each of `meetings`; returns them.
    pub fn seed_registrants(&self, meetings: &[SimMeeting], n: usize) -> Vec<SimRegistrant> {
        let people: Vec<SimRegistrant> =
            meetings.iter().flat_map(|m| (1..=n).map(|i| SimRegistrant::new(&m.id, i))).collect();
        for p in &people {
            self.upsert_registrant(p.clone());
        }
        people
    }

    /// The write-backs the platform received.
    pub fn write_backs(&self) -> Vec<WriteBack> {
        self.lock().people.write_backs.clone()
    }

    /// The next write-backs are answered with these statuses.
    pub fn fail_write_backs(&self, statuses: &[u16]) {
        self.lock().people.write_back_faults.extend(statuses);
    }

    /// The registrants Graph holds on `organizer`'s `meeting`.
    pub fn graph_registrants(&self, organizer: &str, meeting: &str) -> Vec<GraphRegistrant> {
        let s = self.lock();
        s.people
            .registrants
            .get(&(organizer.to_owned(), meeting.to_owned()))
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Creates (or changes the status of) webinar `id`: `draft`, `published`, `canceled`.
    pub fn put_webinar(&self, id: &str, status: &str) {
        self.lock().people.webinars.entry(id.to_owned()).or_default().status = status.to_owned();
    }

    /// From now on every registrant page names itself as the next one, as a
    /// faulty platform may.
    pub fn loop_registrant_pages(&self) {
        self.lock().people.loop_pages = true;
    }

    /// From now on a get of one webinar registration by e-mail is refused
    /// (403): the app may only list.
    pub fn refuse_registration_get(&self) {
        self.lock().people.refuse_get_by_key = true;
    }

    /// How many registrant listing requests the platform answered.
    pub fn registrant_listing_requests(&self) -> u64 {
        self.lock().people.listing_requests
    }

    /// Drops a registrant from the platform's list (they "vanish").
    pub fn remove_registrant(&self, meeting_id: &str, id: &str) {
        self.lock().people.platform.retain(|r| !(r.meeting_id == meeting_id && r.id == id));
    }

    /// From now on a new webinar registration is listed only `lag` after
    /// its create: Graph's lists are eventually consistent.
    pub fn lag_webinar_list(&self, lag: Duration) {
        self.lock().people.list_lag = lag;
    }

    /// Webinar `id` as Graph holds it.
    pub fn webinar(&self, id: &str) -> Option<SimWebinar> {
        self.lock().people.webinars.get(id).cloned()
    }

    /// Every request about people at Graph.
    pub fn people_log(&self) -> Vec<PeopleRequest> {
        self.lock().people.log.clone()
    }

    /// Every secret the identity platform and the platform's token endpoint
    /// have issued or received: access, id and refresh tokens, assertions
    /// (for tests that look for leaks).
    pub fn issued_secrets(&self) -> Vec<String> {
        let s = self.lock();
        let platform = s.platform.oauth.iter().flat_map(|o| o.tokens.keys().cloned());
        s.tokens.keys().cloned().chain(s.identity.issued_secrets()).chain(platform).collect()
    }

    /// From now on the join-link `$filter` answers every meeting of the
    /// organizer, not only the one asked for.
    pub fn misfilter_meetings(&self) {
        self.lock().misfilter = true;
    }

    /// Graph answers 401 to every access token of the signed-in user `oid`,
    /// even a freshly refreshed one.
    pub fn refuse_user_tokens(&self, oid: &str) {
        self.lock().refused_users.insert(oid.to_owned());
    }

    /// Graph accepts the user's tokens again.
    pub fn accept_user_tokens(&self, oid: &str) {
        self.lock().refused_users.remove(oid);
    }

    /// Revokes every issued token (Graph then answers 401 to them).
    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    /// The registration Graph holds for a meeting.
    pub fn registration(&self, organizer: &str, meeting: &str) -> Option<Registration> {
        self.lock().registrations.get(&(organizer.to_owned(), meeting.to_owned())).cloned()
    }

    /// Every Graph registration request so far.
    pub fn log(&self) -> Vec<GraphRequest> {
        self.lock().log.clone()
    }

    /// From now on the platform answers 401 to a list request that lacks
    /// any of these headers with exactly this value (`Authorization:
    /// Basic …`, a second key header, …).
    pub fn require_platform_headers(&self, headers: &[(&str, &str)]) {
        self.lock().platform.required_headers =
            headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned())).collect();
    }

    /// When each platform list request arrived, and its status.
    pub fn platform_requests(&self) -> Vec<(tokio::time::Instant, u16)> {
        self.lock().platform.requests.clone()
    }

    /// Asks every listing request for a token from the platform's OAuth
    /// endpoint (`POST /platform/oauth2/token`), each living `lifetime_secs`.
    pub fn require_platform_oauth(&self, lifetime_secs: u64) {
        self.lock().platform.oauth = Some(platform::PlatformOAuth { lifetime_secs, ..Default::default() });
    }

    /// The platform's OAuth endpoint writes `expires_in` as this JSON value
    /// (`1e300`, `18446744073709551615`: valid JSON, absurd lifetimes).
    pub fn platform_token_expires_in(&self, value: serde_json::Value) {
        if let Some(oauth) = self.lock().platform.oauth.as_mut() {
            oauth.expires_in_as = Some(value);
        }
    }

    /// Tokens the platform's OAuth endpoint issued.
    pub fn platform_tokens_issued(&self) -> u64 {
        self.lock().platform.oauth.as_ref().map_or(0, |o| o.issued)
    }

    /// Lists meetings by organizer e-mail (`organizer_email`) and Teams join
    /// link (`join_url`) instead of Graph's ids.
    pub fn list_by_reference(&self, by_reference: bool) {
        self.lock().platform.by_reference = by_reference;
    }

    /// Every user and meeting lookup so far.
    pub fn lookups(&self) -> Vec<LookupRequest> {
        self.lock().lookups.clone()
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
