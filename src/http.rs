//! Serving the router over HTTP/1.1 with the limits `axum::serve` does not have.
//!
//! A slow-loris client opens connections and trickles its headers (or sends nothing at all);
//! `axum::serve` would keep each such connection forever. Here every connection is served by
//! hyper with a header-read timeout (also the limit for an idle keep-alive connection) and a
//! bounded head (header bytes and count: 431 past it). The body is bounded by the router (413)
//! and the whole request by `server.request_timeout` (408).
//!
//! Connections are limited, and an idle one (no request in progress: nothing asked yet, a head
//! still trickling in, or a keep-alive connection between requests) gives way to a new one:
//!
//! - at most `max_connections_per_client` from one address: past it, that client's oldest idle
//!   connection is closed for the new one; when none of its connections is idle the new one is
//!   refused (closed at once). Behind a reverse proxy every connection comes from the proxy's
//!   address, so the default leaves it a quarter of the cap;
//! - at most `max_connections` in all: past it the oldest idle connection is closed for the new
//!   one; only when every connection is busy does the new one wait for a free slot (and the
//!   connections after it in the listen backlog);
//! - above [`PRESSURE_PERCENT`] of the cap, connections idle for [`EARLY_IDLE`] are closed
//!   without waiting for the header timeout.
//!
//! So a thousand silent sockets cost each of them a slot for at most a second, never a real
//! delivery its answer. A connection that never asked anything is dropped; one that has served
//! a request is shut down gracefully (a request that just started is finished first).
//!
//! Shutdown: stop accepting, tell each connection to finish its request in flight and close,
//! wait up to `grace`, then drop whatever is left (a slow client mid-headers has no request to
//! lose).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Above this share of `max_connections`, idle connections are closed after [`EARLY_IDLE`].
pub const PRESSURE_PERCENT: usize = 75;
/// How long a connection may stay idle (no request head yet, or between requests) when the
/// server is near its cap.
pub const EARLY_IDLE: Duration = Duration::from_secs(1);
/// How often idle connections are looked at while the server is near its cap.
const PRESSURE_TICK: Duration = Duration::from_millis(250);

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's whole head, from the connection's start or the previous
    /// answer. Also how long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections from one client address at once.
    pub max_connections_per_client: usize,
    /// Bytes of a request head (hyper answers 431 past it; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Header lines of a request head (431 past it).
    pub max_headers: usize,
}

impl Limits {
    /// The service's limits for a given `server.request_timeout`, with the default connection
    /// caps.
    pub fn for_request_timeout(request_timeout: Duration) -> Limits {
        Limits {
            header_timeout: request_timeout,
            max_connections: 1024,
            max_connections_per_client: 256,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
        }
    }

    fn pressure_mark(&self) -> usize {
        self.max_connections.max(1) * PRESSURE_PERCENT / 100
    }
}

/// What the connection limits did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    /// Connections open now.
    pub open: AtomicU64,
    /// Idle connections closed for a new one from the same client at its limit.
    pub closed_client_limit: AtomicU64,
    /// Idle connections closed for a new one at the cap.
    pub closed_cap: AtomicU64,
    /// Connections closed after [`EARLY_IDLE`] near the cap.
    pub closed_idle_near_cap: AtomicU64,
    /// New connections refused: their client was at its limit with every connection busy.
    pub refused_client_busy: AtomicU64,
}

/// Serves `app` on `listener` until `stop` is cancelled, then closes down within `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    grace: Duration,
) {
    serve_with_stats(listener, app, limits, Arc::default(), stop, grace).await;
}

/// [`serve`], counting what the limits do in `stats`.
pub async fn serve_with_stats(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stats: Arc<ConnectionStats>,
    stop: CancellationToken,
    grace: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let registry = Arc::new(Registry::new(stats.clone()));
    let per_client = limits.max_connections_per_client.max(1);
    let mut connections = JoinSet::new();
    loop {
        // Forget the connections that are over.
        while connections.try_join_next().is_some() {}
        let under_pressure = registry.live() > limits.pressure_mark();
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a moment rather than spin, and go on.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tokio::time::sleep(PRESSURE_TICK), if under_pressure => {
                registry.close_idle_for(EARLY_IDLE);
                continue;
            }
            _ = stop.cancelled() => break,
        };
        let client = peer.ip();
        if registry.live_from(client) >= per_client && !registry.close_oldest_idle(Some(client)) {
            stats.refused_client_busy.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%client, "connection refused: its client is at server.max_connections_per_client");
            continue;
        }
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // At the cap: the oldest idle connection makes room; with every one busy, wait.
                registry.close_oldest_idle(None);
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break, // never closed; nothing to serve without permits
                    },
                    _ = stop.cancelled() => break,
                }
            }
        };
        if registry.live() >= limits.pressure_mark() {
            registry.close_idle_for(EARLY_IDLE);
        }
        let _ = stream.set_nodelay(true);
        let entry = registry.open(client, &stop);
        let tracked = {
            let entry = entry.clone();
            let service = TowerToHyperService::new(app.clone());
            hyper::service::service_fn(move |request| {
                let busy = Busy::begin(entry.clone());
                let answer = service.call(request);
                async move {
                    let _busy = busy;
                    answer.await
                }
            })
        };
        let connection = http.serve_connection(TokioIo::new(stream), tracked);
        let stop = stop.clone();
        let registry = registry.clone();
        connections.spawn(async move {
            let _permit = permit;
            let _registered = Registered {
                registry,
                entry: entry.clone(),
            };
            let mut connection = std::pin::pin!(connection);
            let mut stopping = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                        return;
                    }
                    _ = entry.close.cancelled(), if !stopping => {
                        let untouched = entry.served.load(Ordering::SeqCst) == 0
                            && entry.active.load(Ordering::SeqCst) == 0;
                        if !stop.is_cancelled() && untouched {
                            // Closed to make room, and it never asked anything: nothing to lose.
                            return;
                        }
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        });
    }
    drop(listener);
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        tracing::debug!(
            open = connections.len(),
            "connections still open after the grace: dropped"
        );
    }
    connections.shutdown().await;
}

/// One open connection, as the limits see it.
struct Connection {
    id: u64,
    client: IpAddr,
    /// Requests in progress (0 or 1 on HTTP/1.1): a busy connection is never closed early.
    active: AtomicUsize,
    /// Requests answered so far.
    served: AtomicU64,
    /// When it last became idle (opened, or answered), in ms since `epoch`.
    idle_since_ms: AtomicU64,
    /// The registry's start, the clock of `idle_since_ms`.
    epoch: Instant,
    /// Cancelled to close it (a child of the server's stop: shutdown closes it too).
    close: CancellationToken,
    /// Told to close already, or over: no longer counted against its client.
    leaving: AtomicBool,
}

impl Connection {
    /// Since when it is idle (ms on the registry's clock); `None` when busy or leaving.
    fn idle_since(&self) -> Option<u64> {
        let idle = self.active.load(Ordering::SeqCst) == 0 && !self.leaving.load(Ordering::SeqCst);
        idle.then(|| self.idle_since_ms.load(Ordering::SeqCst))
    }
}

/// Every open connection, and how many each client has.
struct Registry {
    started: Instant,
    stats: Arc<ConnectionStats>,
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    next_id: u64,
    connections: HashMap<u64, Arc<Connection>>,
    /// Connections per client that are not leaving.
    per_client: HashMap<IpAddr, usize>,
    /// Connections that are not leaving.
    live: usize,
}

/// Why an idle connection is closed early.
#[derive(Clone, Copy)]
enum Reason {
    ClientLimit,
    Cap,
    IdleNearCap,
}

impl Registry {
    fn new(stats: Arc<ConnectionStats>) -> Registry {
        Registry {
            started: Instant::now(),
            stats,
            inner: Mutex::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn live(&self) -> usize {
        self.lock().live
    }

    fn live_from(&self, client: IpAddr) -> usize {
        self.lock().per_client.get(&client).copied().unwrap_or(0)
    }

    fn open(&self, client: IpAddr, stop: &CancellationToken) -> Arc<Connection> {
        let mut inner = self.lock();
        inner.next_id += 1;
        let entry = Arc::new(Connection {
            id: inner.next_id,
            client,
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(self.now_ms()),
            epoch: self.started,
            close: stop.child_token(),
            leaving: AtomicBool::new(false),
        });
        inner.connections.insert(entry.id, entry.clone());
        *inner.per_client.entry(client).or_insert(0) += 1;
        inner.live += 1;
        self.stats.open.fetch_add(1, Ordering::Relaxed);
        entry
    }

    /// No longer counted as live (told to close, or over); once only.
    fn leave(inner: &mut RegistryInner, entry: &Connection) {
        if entry.leaving.swap(true, Ordering::SeqCst) {
            return;
        }
        inner.live = inner.live.saturating_sub(1);
        if let Some(n) = inner.per_client.get_mut(&entry.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.per_client.remove(&entry.client);
            }
        }
    }

    fn close(&self, inner: &mut RegistryInner, entry: &Connection, reason: Reason) {
        Registry::leave(inner, entry);
        entry.close.cancel();
        let counter = match reason {
            Reason::ClientLimit => &self.stats.closed_client_limit,
            Reason::Cap => &self.stats.closed_cap,
            Reason::IdleNearCap => &self.stats.closed_idle_near_cap,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the connection idle the longest (of `client`, or of anyone; the first opened of
    /// those idle since the same moment); false when none is idle.
    fn close_oldest_idle(&self, client: Option<IpAddr>) -> bool {
        let mut inner = self.lock();
        let oldest = inner
            .connections
            .values()
            .filter(|c| client.is_none_or(|ip| c.client == ip))
            .filter_map(|c| c.idle_since().map(|since| (since, c.id)))
            .min()
            .and_then(|(_, id)| inner.connections.get(&id).cloned());
        let Some(oldest) = oldest else {
            return false;
        };
        let reason = if client.is_some() {
            Reason::ClientLimit
        } else {
            Reason::Cap
        };
        self.close(&mut inner, &oldest, reason);
        tracing::debug!(client = %oldest.client, "idle connection closed to make room");
        true
    }

    /// Closes every connection idle for `limit` or longer.
    fn close_idle_for(&self, limit: Duration) {
        let now = self.now_ms();
        let limit = limit.as_millis() as u64;
        let mut inner = self.lock();
        let idle: Vec<Arc<Connection>> = inner
            .connections
            .values()
            .filter(|c| {
                c.idle_since()
                    .is_some_and(|since| now.saturating_sub(since) >= limit)
            })
            .cloned()
            .collect();
        for entry in &idle {
            self.close(&mut inner, entry, Reason::IdleNearCap);
        }
        if !idle.is_empty() {
            tracing::debug!(
                closed = idle.len(),
                "idle connections closed early: the server is near server.max_connections"
            );
        }
    }

    fn remove(&self, entry: &Connection) {
        let mut inner = self.lock();
        Registry::leave(&mut inner, entry);
        inner.connections.remove(&entry.id);
        self.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes a connection off the registry when its task ends, however it ends.
struct Registered {
    registry: Arc<Registry>,
    entry: Arc<Connection>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.remove(&self.entry);
    }
}

/// A request in progress on a connection: it is busy until the answer is made.
struct Busy {
    entry: Arc<Connection>,
}

impl Busy {
    fn begin(entry: Arc<Connection>) -> Busy {
        entry.active.fetch_add(1, Ordering::SeqCst);
        Busy { entry }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let entry = &self.entry;
        entry.served.fetch_add(1, Ordering::SeqCst);
        entry
            .idle_since_ms
            .store(entry.epoch.elapsed().as_millis() as u64, Ordering::SeqCst);
        entry.active.fetch_sub(1, Ordering::SeqCst);
    }
}
