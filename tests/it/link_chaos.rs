//! The network-fault run: three `regsync run` replicas, each in a network
//! namespace of its own, and PostgreSQL (a primary and its streaming
//! standby) with the simulator (platform, identity platform, Graph) in
//! another (`helpers::lab`). Every byte between them crosses a veth pair
//! and a relay on the router (`helpers::relay`), per replica and per link,
//! while a seeded schedule makes the links lie — latency and jitter up to
//! seconds, one-way and two-way cuts, half-open links, packets dropped at
//! random by the router's packet filter — kills replicas, crashes
//! PostgreSQL and starts it again, and fails it over once: the primary
//! dies, the standby (synchronous) is promoted and the database's service
//! address, the relays, moves to it. After the faults heal, judged from the
//! books: every meeting and every person converged, no create while a
//! registration existed, no request inside a Retry-After window, no
//! registration left for a cancelled meeting, no replica panicked.
//!
//! The short form runs in CI; the long form:
//! `REGSYNC_LINK_SECS=600 REGSYNC_LINK_MEETINGS=2000 REGSYNC_LINK_PEOPLE=1000 \
//!  cargo test --release --all-features --test it -- --include-ignored link_chaos`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use regsync_sim::devdb::Cluster;
use regsync_sim::{FaultRates, Sim, SimMeeting, SimRegistrant};

use crate::chaos::{env_number, open_meetings, Replica};
use crate::helpers::eventually;
use crate::helpers::lab::{Inside, Lab};
use crate::helpers::relay::Relay;
use crate::helpers::timeliness::timeliness;

/// The lab's namespace of PostgreSQL and the simulator; replicas are 1 to 3.
const SERVICES: u8 = 0;

/// A replica's three links through the router — to Graph (and the identity
/// platform), to the event platform, to PostgreSQL — and the pipes on its
/// own loopback that reach the first two (regsync sends credentials over
/// plain http only to a loopback address, as its configuration requires of
/// a simulator).
struct Links {
    graph: Relay,
    platform: Relay,
    database: Relay,
    _pipes: (Relay, Relay, Inside),
}

/// One fault on one link, drawn from `rng`.
fn strike(rng: &mut rand::rngs::StdRng, link: &Relay) -> &'static str {
    match rng.random_range(0..6) {
        0 => {
            link.delay(Duration::from_millis(rng.random_range(200..2_500)), Duration::from_millis(300));
            "latency"
        }
        1 => {
            link.cut(true, false);
            "cut one way (requests)"
        }
        2 => {
            link.cut(false, true);
            "cut one way (answers)"
        }
        3 => {
            link.cut(true, true);
            "half-open"
        }
        _ => {
            link.heal();
            "healed"
        }
    }
}

/// PostgreSQL in the services' namespace, reachable from the router, and
/// a synchronous streaming standby beside it.
fn databases(lab: &Lab) -> (Cluster, Cluster) {
    lab.within(SERVICES, || {
        let mut primary = Cluster::start().expect("own PostgreSQL");
        primary.serve_network("10.213.0.0/16").expect("PostgreSQL on the lab's network");
        let standby = primary.standby().expect("a standby");
        (primary, standby)
    })
}

/// `postgres://…` of a cluster in the services' namespace, as the router reaches it.
fn url_of(cluster: &Cluster) -> String {
    let mut url = reqwest::Url::parse(cluster.url()).expect("a URL");
    url.set_ip_host(Lab::address(SERVICES)).expect("an IP host");
    url.to_string()
}

async fn run(seconds: u64, meetings: usize, people: usize) {
    let seed = env_number("REGSYNC_LINK_SEED", 7);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let lab = Lab::new(4);
    let (mut cluster, standby) = tokio::task::block_in_place(|| databases(&lab));
    let mut db = url_of(&cluster);
    // Commits wait for the standby: the failover loses none.
    crate::failover::standby_streams(&db, true).await;
    let database_at = |cluster: &Cluster| SocketAddr::new(Lab::address(SERVICES), cluster.port());
    let services = lab.runtime(SERVICES);
    let sim = services
        .spawn(Sim::start(SocketAddr::new(Lab::address(SERVICES), 0)))
        .await
        .expect("joined")
        .expect("the simulator");
    let all: Vec<SimMeeting> = (1..=meetings).map(SimMeeting::generated).collect();
    for m in &all {
        sim.upsert_meeting(m.clone());
    }
    let open: Vec<SimMeeting> =
        all.iter().filter(|m| m.status == "active" && m.allowed_registrant == "everyone").cloned().collect();
    // Two people each for as many open meetings as it takes.
    let people: Vec<SimRegistrant> = sim.seed_registrants(&open[..(people / 2).min(open.len())], 2);
    // Slow enough that the faults meet work under way.
    sim.set_rates(FaultRates {
        throttle: 0.01,
        retry_after_secs: 0.5,
        error: 0.02,
        latency: Duration::from_millis(300),
        ..FaultRates::default()
    });

    let logs = std::env::temp_dir().join(format!("regsync-links-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&logs).expect("log dir");
    let mut links = Vec::new();
    let mut replicas = Vec::new();
    for host in 1..=3 {
        let graph = Relay::start_on(Lab::on_router(host, 0), sim.addr()).await;
        let platform = Relay::start_on(Lab::on_router(host, 0), sim.addr()).await;
        // The internet holds nothing longer than its longest latency (2.8 s):
        // bytes a cut keeps longer are lost, and their connection reset. The
        // database links hold until healed, so a half-open one stays silent.
        for link in [&graph, &platform] {
            link.hold_at_most(Duration::from_secs(3));
        }
        let database = Relay::start_on(Lab::on_router(host, 0), database_at(&cluster)).await;
        let inside = lab.runtime(host);
        let to_graph = inside.spawn(Relay::start(graph.addr)).await.expect("a pipe");
        let to_platform = inside.spawn(Relay::start(platform.addr)).await.expect("a pipe");
        let mut replica = Replica::new(logs.join(format!("replica-{host}.log")));
        replica.host = Lab::address(host);
        let at = sim.endpoints();
        replica.extra_env.extend(
            [
                ("DATABASE_URL", database.url(&db)),
                ("REGSYNC__SOURCE__BASE_URL", to_platform.url(&at.platform)),
                ("REGSYNC__GRAPH__BASE_URL", to_graph.url(&at.graph)),
                ("REGSYNC__GRAPH__AUTHORITY_URL", to_graph.url(&at.authority)),
                ("REGSYNC__GRAPH__TIMEOUT_MS", "1000".into()),
                // What a path can hold after regsync gave up (the links'
                // bound, above): a lookup waits that long too.
                ("REGSYNC__GRAPH__MAX_NETWORK_DELAY_MS", "3000".into()),
                // A request may leave up to half a lease after its gate and
                // is given up on a timeout later; what it sent may then
                // spend up to 3 s on the path and must still arrive inside
                // the lease: 6 + 1 + 3 < 12 s.
                ("REGSYNC__SYNC__LEASE_TTL_MS", "12000".into()),
                ("REGSYNC__DATABASE__STATEMENT_TIMEOUT_MS", "2000".into()),
                ("REGSYNC__REGISTRANTS__ENABLED", "true".into()),
                ("REGSYNC__REGISTRANTS__PATH", "/registrants".into()),
                ("REGSYNC__WRITEBACK__URL", "/meetings/{meeting_id}/registrants/{registrant_id}/join-link".into()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        lab.within(host, || replica.start(&db, &sim));
        replicas.push(replica);
        links.push(Links { graph, platform, database, _pipes: (to_graph, to_platform, inside) });
    }

    let working = eventually(Duration::from_secs(30), async || sim.stats().tokens_issued > 0).await;
    assert!(working, "no replica reached the simulator: see {}", logs.display());
    let started = Instant::now();
    let (mut faults, mut losses, mut kills, mut db_crashes) = (0, 0, 0, 0);
    let mut not_ready_during_outage = Vec::new();
    let cancelled: Vec<&SimMeeting> = open.iter().take(3).collect();
    let mut cancelled_midway = false;
    let mut standby = Some(standby);
    while started.elapsed() < Duration::from_secs(seconds) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_000))).await;
        let i = rng.random_range(0..replicas.len());
        let host = i as u8 + 1;
        match rng.random_range(0..13) {
            11 => {
                cluster.crash();
                tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
                // /readyz tells the truth while the database is down.
                let listen = replicas[i].listen.clone();
                let ready = reqwest::get(format!("http://{listen}/readyz")).await.ok().map(|r| r.status().as_u16());
                not_ready_during_outage.push(ready);
                tokio::task::block_in_place(|| lab.within(SERVICES, || cluster.start_again())).expect("back up");
                db_crashes += 1;
            }
            12 => {
                if rng.random_bool(0.5) {
                    lab.lose_packets(host, rng.random_range(0.05..0.3));
                } else {
                    lab.no_loss(host);
                }
                losses += 1;
            }
            0 => {
                replicas[i].kill();
                tokio::time::sleep(Duration::from_millis(rng.random_range(100..800))).await;
                lab.within(host, || replicas[i].start(&db, &sim));
                kills += 1;
            }
            1..=3 => {
                strike(&mut rng, &links[i].graph);
                faults += 1;
            }
            4..=5 => {
                strike(&mut rng, &links[i].platform);
                faults += 1;
            }
            6..=10 => {
                strike(&mut rng, &links[i].database);
                faults += 1;
            }
            _ => unreachable!("drawn from 0..13"),
        }
        if !cancelled_midway && started.elapsed() > Duration::from_secs(seconds / 2) {
            cancelled_midway = true;
            for m in &cancelled {
                sim.update_meeting(&m.id, |m| m.status = "cancelled".into());
            }
        }
        // The failover, once, two thirds in: the primary dies, the standby
        // is promoted, the service address moves to it.
        if started.elapsed() > Duration::from_secs(seconds * 2 / 3) {
            if let Some(promoted) = standby.take() {
                cluster.crash();
                let admin = sqlx::PgPool::connect(&url_of(&promoted)).await.expect("the standby");
                sqlx::query("SELECT pg_promote()").execute(&admin).await.expect("promoted");
                admin.close().await;
                for l in &links {
                    l.database.retarget(database_at(&promoted));
                }
                cluster = promoted;
                db = url_of(&cluster);
            }
        }
    }
    for (l, host) in links.iter().zip(1..) {
        l.graph.heal();
        l.platform.heal();
        l.database.heal();
        lab.no_loss(host);
    }
    let pool = sqlx::PgPool::connect(&db).await.expect("db");
    let open_people = async || -> Option<i64> {
        sqlx::query_scalar("SELECT count(*) FROM registrants WHERE state IN ('pending', 'retrying', 'in_flight')")
            .fetch_one(&pool)
            .await
            .ok()
    };
    let quiet = eventually(Duration::from_secs(300), async || {
        open_meetings(&pool).await == Some(0) && open_people().await == Some(0)
    })
    .await;
    for r in &mut replicas {
        r.terminate();
    }
    let stats = sim.stats();
    let books = timeliness(&pool, &sim).await;
    println!(
        "link chaos: seed {seed}, {seconds} s, {meetings} meetings, {} people, {faults} link faults, \
         {losses} packet-loss changes, {kills} kills, {db_crashes} database crashes (/readyz during them: \
         {not_ready_during_outage:?}), failover: {}; {}; {stats:?}",
        people.len(),
        standby.is_none(),
        books.summary()
    );
    assert!(quiet, "not quiescent: meetings {:?}, people {:?}", open_meetings(&pool).await, open_people().await);
    assert_eq!(stats.posts_while_registered, 0, "a create while a registration existed");
    assert_eq!(stats.requests_inside_retry_after, 0, "a request inside a Retry-After window");
    assert!(books.late.is_empty(), "requests arrived after they were given up: {:?}", books.late);
    assert!(books.after_lease.is_empty(), "writes arrived after their lease: {:?}", books.after_lease);
    assert!(books.judged > 0, "no call found in both books");
    // A replica whose link was cut may not answer at all; one that answers
    // says it is not ready.
    assert!(
        not_ready_during_outage.iter().all(|s| s.is_none_or(|s| s == 503)),
        "/readyz said ready while the database was down: {not_ready_during_outage:?}"
    );
    // None lost, no stray: a registration for each active meeting, none
    // for a cancelled one.
    let wrong: Vec<String> = all
        .iter()
        .filter_map(|m| {
            let wanted = m.status == "active" && !cancelled.iter().any(|c| c.id == m.id);
            let held = sim.registration(&m.organizer_id, &m.online_meeting_id).is_some();
            (wanted != held).then(|| format!("{}: wanted {wanted}, held {held}", m.id))
        })
        .collect();
    assert!(wrong.is_empty(), "registrations lost or stray: {wrong:?}");
    for m in &open {
        let held = sim.graph_registrants(&m.organizer_id, &m.online_meeting_id);
        if cancelled.iter().any(|c| c.id == m.id) {
            assert!(held.is_empty(), "{}: people left at a cancelled meeting", m.id);
            continue;
        }
        let mine: Vec<_> = people.iter().filter(|p| p.meeting_id == m.id).collect();
        assert_eq!(held.len(), mine.len(), "{}: each person enrolled once: {held:?}", m.id);
    }
    for r in &replicas {
        let text = std::fs::read_to_string(&r.log).unwrap_or_default();
        assert!(!text.contains("panicked"), "a replica panicked: {}", r.log.display());
    }
    let _ = std::fs::remove_dir_all(logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_lying_links_converge_with_nothing_twice_and_no_one_lost() {
    let (seconds, meetings) = (env_number("REGSYNC_LINK_SECS", 25), env_number("REGSYNC_LINK_MEETINGS", 120));
    run(seconds, meetings as usize, env_number("REGSYNC_LINK_PEOPLE", 180) as usize).await;
}
