//! A link between two real processes that the test can make lie: a TCP
//! relay in user space (this kernel has no `netem`) that forwards each
//! direction of every connection with a latency and jitter of its own (each
//! chunk delayed on its own, as packets in flight are, not one after the
//! other), and can be partitioned one way or both — the bytes then stop
//! where they are, unread, as on a path that drops them (those already read
//! are sent on when it heals, as the sender's kernel would send them again,
//! unless the sender has reset its connection meanwhile); a half-open link
//! keeps both connections up and forwards nothing, without a reset. A reset
//! passes through as a reset. Every byte crosses real TCP connections on
//! both sides.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What one direction of the link does.
#[derive(Debug, Clone, Copy, Default)]
pub struct Way {
    /// Added to every chunk.
    pub latency: Duration,
    /// Up to this much more, at random.
    pub jitter: Duration,
    /// Nothing passes (held, unread).
    pub cut: bool,
}

/// The link's two directions: client to server, server to client.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    up: Way,
    down: Way,
    /// Bytes not delivered this long after they were read are lost, and
    /// their connection reset: the path holds nothing longer (`None`: it
    /// holds them until it heals, as a buffering middlebox would).
    hold: Option<Duration>,
}

/// A relay from a local port to `upstream`.
pub struct Relay {
    /// Where clients connect.
    pub addr: SocketAddr,
    faults: Arc<Mutex<Faults>>,
    upstream: Arc<Mutex<SocketAddr>>,
    /// When bytes last went from a client to the server.
    delivered: Arc<Mutex<Option<Instant>>>,
}

impl Relay {
    /// Relays connections to `upstream`, faithfully until told otherwise.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_on(([127, 0, 0, 1], 0).into(), upstream).await
    }

    /// Relays connections to the server of `url` (its host an IP address,
    /// as the test servers' are): a database's, say.
    pub async fn to_server_of(url: &str) -> Self {
        let parsed = reqwest::Url::parse(url).expect("a URL");
        let host = parsed.host_str().and_then(|h| h.parse().ok()).expect("an IP host");
        Self::start(SocketAddr::new(host, parsed.port().expect("a port"))).await
    }

    /// The same, listening on `listen` (port 0: any).
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let faults = Arc::new(Mutex::new(Faults::default()));
        let upstream = Arc::new(Mutex::new(upstream));
        let delivered = Arc::new(Mutex::new(None));
        let (shared, target, stamp) = (faults.clone(), upstream.clone(), delivered.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let to = *target.lock().unwrap();
                let Ok(server) = TcpStream::connect(to).await else { continue };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                // A reset is passed on as a reset: the server's side closes
                // with a zero linger, so what it had not sent is discarded.
                let _ = server.set_zero_linger();
                let reset = CancellationToken::new();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = Direction { faults: shared.clone(), way: |f| f.up, delivered: Some(stamp.clone()) };
                let down = Direction { faults: shared.clone(), way: |f| f.down, delivered: None };
                tokio::spawn(forward(client_read, server_write, up, reset.clone()));
                tokio::spawn(forward(server_read, client_write, down, reset));
            }
        });
        Self { addr, faults, upstream, delivered }
    }

    /// New connections go to `upstream` from now on, as a service address
    /// moves to a promoted standby; those open stay where they are.
    pub fn retarget(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
    }

    /// The URL of `url` with its host and port replaced by the relay's.
    pub fn url(&self, url: &str) -> String {
        let mut parsed = reqwest::Url::parse(url).expect("a URL");
        parsed.set_ip_host(self.addr.ip()).expect("an IP host");
        parsed.set_port(Some(self.addr.port())).expect("a port");
        parsed.to_string().trim_end_matches('/').to_owned()
    }

    /// Both directions delayed by `latency` plus up to `jitter`.
    pub fn delay(&self, latency: Duration, jitter: Duration) {
        let mut f = self.faults.lock().unwrap();
        f.up = Way { latency, jitter, ..f.up };
        f.down = Way { latency, jitter, ..f.down };
    }

    /// Client to server cut (`up`), server to client cut (`down`), or both.
    pub fn cut(&self, up: bool, down: bool) {
        let mut f = self.faults.lock().unwrap();
        f.up.cut = up;
        f.down.cut = down;
    }

    /// When bytes last went from a client to the server.
    pub fn last_delivered(&self) -> Option<Instant> {
        *self.delivered.lock().unwrap()
    }

    /// Bytes are lost, and their connection reset, when they cannot be
    /// delivered within `hold` of reaching the relay; a cut direction keeps
    /// reading meanwhile, so nothing waits unbounded in its buffers either.
    pub fn hold_at_most(&self, hold: Duration) {
        self.faults.lock().unwrap().hold = Some(hold);
    }

    /// Everything passes again, at once (the bound on holding stays).
    pub fn heal(&self) {
        let mut f = self.faults.lock().unwrap();
        *f = Faults { hold: f.hold, ..Faults::default() };
    }
}

/// Whether the sender reset its connection (a read fails; its bytes
/// are not consumed).
async fn was_reset(from: &mut OwnedReadHalf) -> bool {
    let mut probe = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_millis(1), from.peek(&mut probe)).await, Ok(Err(_)))
}

/// One direction of a connection.
struct Direction {
    faults: Arc<Mutex<Faults>>,
    way: fn(&Faults) -> Way,
    /// Stamped when bytes are delivered.
    delivered: Option<Arc<Mutex<Option<Instant>>>>,
}

impl Direction {
    fn now(&self) -> Way {
        (self.way)(&self.faults.lock().unwrap())
    }

    fn hold(&self) -> Option<Duration> {
        self.faults.lock().unwrap().hold
    }
}

/// Forwards `from` to `to`. Each chunk is read as soon as the direction is
/// not cut and delivered its latency later, in order, while later chunks
/// are read meanwhile (packets in flight). A chunk due while the direction
/// is cut waits for it to heal (the sender's kernel would send it again),
/// unless the sender reset its connection: then nothing more is delivered
/// and `reset` closes both directions, the server's with a reset.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, direction: Direction, reset: CancellationToken) {
    let (chunks, mut in_flight) = tokio::sync::mpsc::unbounded_channel::<(Instant, Instant, Vec<u8>)>();
    let read = async {
        let chunks = chunks;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // A cut direction reads nothing: the bytes wait in the sender's
            // socket, as on a path that drops them (unless holding is
            // bounded: then what is read and not delivered in time is lost).
            while direction.now().cut && direction.hold().is_none() {
                if was_reset(&mut from).await {
                    reset.cancel();
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let n = tokio::select! {
                _ = reset.cancelled() => return,
                read = from.read(&mut buf) => match read {
                    Ok(0) => return,
                    Ok(n) => n,
                    Err(_) => {
                        reset.cancel();
                        return;
                    }
                },
            };
            let (w, read_at) = (direction.now(), Instant::now());
            let due = read_at + w.latency + w.jitter.mul_f64(rand::random::<f64>());
            if chunks.send((read_at, due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    };
    let write = async {
        while let Some((read_at, due, bytes)) = in_flight.recv().await {
            tokio::select! {
                _ = reset.cancelled() => return,
                _ = tokio::time::sleep_until(due) => {}
            }
            while direction.now().cut {
                let lost = direction.hold().is_some_and(|hold| read_at.elapsed() > hold);
                if lost {
                    reset.cancel();
                }
                if reset.is_cancelled() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if reset.is_cancelled() || to.write_all(&bytes).await.is_err() {
                return;
            }
            if let Some(stamp) = &direction.delivered {
                *stamp.lock().unwrap() = Some(Instant::now());
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}
