//! A link between two real processes that the test can make lie: a TCP
//! relay in user space (this kernel has no `netem`) that forwards each
//! direction of every connection with a latency and jitter of its own, and
//! can be partitioned one way or both — the bytes then stop where they are,
//! unread, as on a path that drops them (those already read are sent on
//! when it heals, as the sender's kernel would send them again, unless the
//! sender has reset its connection meanwhile); a half-open link keeps both
//! connections up and forwards nothing, without a reset. Every byte crosses
//! real TCP connections on both sides.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

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
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, shared.clone(), |f| f.up, Some(stamp.clone())));
                tokio::spawn(forward(server_read, client_write, shared.clone(), |f| f.down, None));
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

    /// Everything passes again, at once.
    pub fn heal(&self) {
        *self.faults.lock().unwrap() = Faults::default();
    }
}

/// Whether the sender reset its connection (a read fails; its bytes
/// are not consumed).
async fn reset(from: &mut tokio::net::tcp::OwnedReadHalf) -> bool {
    let mut probe = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_millis(1), from.peek(&mut probe)).await, Ok(Err(_)))
}

/// Forwards `from` to `to`, each chunk when its direction lets it.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    faults: Arc<Mutex<Faults>>,
    way: fn(&Faults) -> Way,
    delivered: Option<Arc<Mutex<Option<Instant>>>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // A cut direction reads nothing: the bytes wait in the sender's
        // socket and the relay's, as on a path that drops them.
        while way(&faults.lock().unwrap()).cut {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let read_at = Instant::now();
        let w = way(&faults.lock().unwrap());
        let extra = w.jitter.mul_f64(rand::random::<f64>());
        tokio::time::sleep_until(read_at + w.latency + extra).await;
        // Bytes on the path when it is cut are lost there; the sender's
        // kernel sends them again once it heals, but only while its socket
        // lives: one the sender reset (a request given up on) sends nothing.
        while way(&faults.lock().unwrap()).cut {
            if reset(&mut from).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        if let Some(stamp) = &delivered {
            *stamp.lock().unwrap() = Some(Instant::now());
        }
    }
    let _ = to.shutdown().await;
}
