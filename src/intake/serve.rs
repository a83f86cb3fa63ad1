//! Serving the router over HTTP/1.1 with the limits `axum::serve` does not have.
//!
//! A slow-loris client opens connections and trickles its headers (or sends nothing at all);
//! `axum::serve` would keep each such connection forever. Here every connection is served by
//! hyper with a header-read timeout (also the limit for an idle keep-alive connection), a
//! bounded head (header bytes and count: 431 past it), and at most `max_connections` at once:
//! past the cap new connections wait in the listen backlog until one closes, so a flood of slow
//! clients costs each of them one timeout, not the service's memory. The body is bounded by the
//! router (413) and the whole request by `server.request_timeout` (408).
//!
//! Shutdown: stop accepting, tell each connection to finish its request in flight and close,
//! wait up to `grace`, then drop whatever is left (a slow client mid-headers has no request to
//! lose).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to receive a request's whole head, from the connection's start or the previous
    /// answer. Also how long an idle keep-alive connection is kept.
    pub header_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Bytes of a request head (hyper answers 431 past it; at least 8 KiB).
    pub max_header_bytes: usize,
    /// Header lines of a request head (431 past it).
    pub max_headers: usize,
}

impl Limits {
    /// The service's limits for a given `server.request_timeout`.
    pub fn for_request_timeout(request_timeout: Duration) -> Limits {
        Limits {
            header_timeout: request_timeout,
            max_connections: 1024,
            max_header_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// Serves `app` on `listener` until `stop` is cancelled, then closes down within `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    grace: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    loop {
        // Forget the connections that are over.
        while connections.try_join_next().is_some() {}
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; nothing to serve without permits
            },
            _ = stop.cancelled() => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before it was taken:
                    // wait a moment rather than spin, and go on.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let stop = stop.clone();
        connections.spawn(async move {
            let _permit = permit;
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
                    _ = stop.cancelled(), if !stopping => {
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
