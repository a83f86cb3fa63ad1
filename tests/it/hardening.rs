//! Intake hardening: slow-loris clients (trickled headers, trickled bodies, silent connections)
//! are dropped while everyone else is answered; heads and bodies over their limits are refused,
//! an announced one at once; idle connections make room for new ones (past a client's own
//! limit, past the cap, and early near the cap), while busy ones make extra clients wait rather
//! than fail; a flood of deliveries for one deal costs a few reads, not one each.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use b24_robot::http::{ConnectionStats, Limits, serve_with_stats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::helpers::{Options, TestApp, new_deal, poll, samples, spawn_app_with, wait_for};

/// Loopback addresses other than 127.0.0.1: other clients to the service.
const LOCALHOST_2: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const LOCALHOST_3: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// A service whose portal sends no events, with a 1 s request timeout (headers included).
async fn strict_app() -> TestApp {
    let app = spawn_app_with(Options {
        events: false,
        settings: vec![("server.request_timeout", "1s".into())],
        ..Options::default()
    })
    .await;
    app.started().await;
    app
}

/// What a raw connection got before the server closed it, and when.
struct Closed {
    answer: String,
    after: Duration,
}

/// Opens a connection, sends `head` at once, then `trickle` one byte every `every`; returns when
/// the server closes the connection (or panics after `limit`).
async fn slow_client(
    port: u16,
    head: Vec<u8>,
    trickle: Vec<u8>,
    every: Duration,
    limit: Duration,
) -> Closed {
    let start = Instant::now();
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        if write.write_all(&head).await.is_err() {
            return;
        }
        for byte in trickle {
            // Real time: a client that trickles its bytes is the behaviour under test.
            tokio::time::sleep(every).await;
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
        }
        // Then hold the connection open without a word.
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read_all).await;
    writer.abort();
    assert!(
        closed.is_ok(),
        "a slow client was still connected after {limit:?}"
    );
    Closed {
        answer: String::from_utf8_lossy(&answer).into_owned(),
        after: start.elapsed(),
    }
}

/// Posts a delivery for `deal` and returns its status and how long the answer took.
async fn timed_post(app: &TestApp, deal: u64, ts: u64) -> (u16, Duration) {
    let start = Instant::now();
    let status = app
        .post_event(&app.event_body("ONCRMDEALUPDATE", deal, ts))
        .await
        .status()
        .as_u16();
    (status, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_are_dropped_while_everyone_else_is_answered() {
    let app = strict_app().await;
    let deal = new_deal(&app.sim, "Loris LLC").await;
    let head = b"POST /bitrix24/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Slow: ".to_vec();

    let mut slow = Vec::new();
    for i in 0..60 {
        let port = app.port;
        let (head, trickle) = match i % 3 {
            // Says nothing at all.
            0 => (Vec::new(), Vec::new()),
            // Trickles its headers, one byte every 100 ms, forever.
            1 => (head.clone(), b"a".repeat(1000)),
            // Sends its headers, then trickles a body it announced as 10 KB.
            _ => (
                b"POST /bitrix24/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000\r\n\r\n".to_vec(),
                b"x".repeat(1000),
            ),
        };
        slow.push(tokio::spawn(slow_client(
            port,
            head,
            trickle,
            Duration::from_millis(100),
            Duration::from_secs(5),
        )));
    }

    // Meanwhile (every slow client connected) the portal's deliveries are answered promptly.
    connections_taken(&app, 60).await;
    for ts in 0..20 {
        let (status, took) = timed_post(&app, deal, 1_800_000_000 + ts).await;
        assert_eq!(status, 200);
        assert!(took < Duration::from_millis(900), "answered in {took:?}");
    }

    for (i, client) in slow.into_iter().enumerate() {
        let closed = client.await.expect("slow client");
        // Dropped around the 1 s limit (not before: the limit is not a guess).
        assert!(
            closed.after >= Duration::from_millis(900) && closed.after < Duration::from_secs(3),
            "slow client {i} dropped after {:?}",
            closed.after
        );
        if i % 3 == 2 {
            assert!(
                closed.answer.starts_with("HTTP/1.1 408"),
                "a slow body is answered 408: {:?}",
                closed.answer
            );
        }
    }
    // The service is still fine.
    let (status, _) = timed_post(&app, deal, 1_800_000_100).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_head_over_its_limits_is_refused_with_431() {
    let app = strict_app().await;
    let big = app
        .client
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .header("X-Big", "a".repeat(20 * 1024))
        .send()
        .await
        .expect("an answer");
    assert_eq!(big.status().as_u16(), 431);

    let mut many = app
        .client
        .get(format!("http://127.0.0.1:{}/healthz", app.port));
    for i in 0..100 {
        many = many.header(format!("X-Header-{i}"), "1");
    }
    assert_eq!(many.send().await.expect("an answer").status().as_u16(), 431);

    let fine = app
        .client
        .get(format!("http://127.0.0.1:{}/healthz", app.port))
        .send()
        .await
        .expect("an answer");
    assert_eq!(fine.status().as_u16(), 200);
}

#[tokio::test]
async fn a_chunked_body_over_max_body_is_refused_with_413() {
    let app = strict_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    let head = "POST /bitrix24/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n";
    let _ = stream.write_all(head.as_bytes()).await;
    let chunk = format!("2000\r\n{}\r\n", "a".repeat(0x2000));
    // 80 KiB, no length announced: the limit is found while reading.
    for _ in 0..10 {
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert_eq!(app.store.queue_len(), 0);
}

/// Waits until the service has taken at least `n` connections: open now, or closed by the
/// limits to make room (`b24robot_http_connections`, `b24robot_http_connections_closed_total`).
async fn connections_taken(app: &TestApp, n: usize) {
    poll(
        Duration::from_secs(10),
        &format!("{n} connections taken"),
        async || {
            let metrics = samples(&app.metrics_text().await);
            let taken: f64 = metrics
                .iter()
                .filter(|(key, _)| {
                    *key == "b24robot_http_connections"
                        || key.starts_with("b24robot_http_connections_closed_total{")
                })
                .map(|(_, n)| n)
                .sum();
            (taken >= n as f64).then_some(())
        },
    )
    .await;
}

/// A server without a service, as the limits see it.
struct BareServer {
    port: u16,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    stats: Arc<ConnectionStats>,
    /// Requests inside the handler now.
    busy: Arc<AtomicUsize>,
    /// Closed: the handler holds every request until it is opened.
    gate: Arc<tokio::sync::Semaphore>,
}

/// A bare server on a free port with `limits`, whose `/` answers at once, or (`held`) once the
/// test opens its gate ([`BareServer::open`]).
async fn bare_server(limits: Limits, held: bool) -> BareServer {
    // The clients below are reqwest's, built without a service (which would install it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let busy = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(if held {
        0
    } else {
        tokio::sync::Semaphore::MAX_PERMITS
    }));
    let app = {
        let (busy, gate) = (busy.clone(), gate.clone());
        axum::Router::new().route(
            "/",
            axum::routing::get(move || async move {
                busy.fetch_add(1, Ordering::SeqCst);
                let _pass = gate.acquire().await.expect("the gate stays");
                busy.fetch_sub(1, Ordering::SeqCst);
                "ok"
            }),
        )
    };
    let stop = CancellationToken::new();
    let stats = Arc::new(ConnectionStats::default());
    let server = tokio::spawn(serve_with_stats(
        listener,
        app,
        limits,
        stats.clone(),
        stop.clone(),
        Duration::from_secs(1),
    ));
    BareServer {
        port,
        stop,
        server,
        stats,
        busy,
        gate,
    }
}

impl BareServer {
    /// Waits until the server has taken `n` connections in all.
    async fn open(&self, n: u64) {
        wait_for(
            Duration::from_secs(5),
            &format!("{n} connections open"),
            || self.stats.open.load(Ordering::SeqCst) == n,
        )
        .await;
    }

    /// Lets every held request, and every later one, through.
    fn release(&self) {
        self.gate
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(3), self.server)
            .await
            .expect("the server stops within its grace")
            .expect("server task");
    }
}

/// A connection from `source` (bound before connecting, so the service sees another client);
/// from the default address where binding to `source` is not possible.
async fn connect_from(source: IpAddr, port: u16) -> TcpStream {
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    let socket = TcpSocket::new_v4().expect("socket");
    if socket.bind(SocketAddr::new(source, 0)).is_err() {
        return TcpStream::connect(target).await.expect("connect");
    }
    socket.connect(target).await.expect("connect")
}

/// Whether the server has closed `stream` (read gives end of file or an error) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// Limits for the bare-server tests: a 10 s header timeout, so that nothing below is the
/// timeout's doing.
fn bare_limits(max_connections: usize, per_client: usize) -> Limits {
    Limits {
        max_connections,
        max_connections_per_client: per_client,
        ..Limits::for_request_timeout(Duration::from_secs(10))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_the_oldest_idle_connection_makes_room_at_once() {
    let bare = bare_server(bare_limits(4, 4), false).await;
    let port = bare.port;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from(LOCALHOST_2, port).await);
    }
    bare.open(4).await;
    let start = Instant::now();
    let answer = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .expect("answered");
    let waited = start.elapsed();
    assert_eq!(answer.status().as_u16(), 200);
    assert!(waited < Duration::from_millis(500), "waited {waited:?}");
    assert!(
        closed_within(&mut idle[0], Duration::from_secs(1)).await,
        "the oldest idle connection was closed"
    );
    assert_eq!(bare.stats.closed_cap.load(Ordering::SeqCst), 1);
    bare.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_connection_cap_with_every_connection_busy_a_client_waits_for_a_free_slot() {
    let bare = bare_server(bare_limits(2, 2), true).await;
    let url = format!("http://127.0.0.1:{}/", bare.port);
    // Two requests in flight (from another client) take both slots until the gate opens; they
    // cannot be closed early.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                reqwest::Client::builder()
                    .local_address(LOCALHOST_2)
                    .build()
                    .expect("client")
                    .get(url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    wait_for(Duration::from_secs(5), "both slots busy", || {
        bare.busy.load(Ordering::SeqCst) == 2
    })
    .await;
    let mut waiting = tokio::spawn(reqwest::get(url.clone()));
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut waiting)
            .await
            .is_err(),
        "answered while every slot was busy"
    );
    assert_eq!(bare.stats.refused_client_busy.load(Ordering::SeqCst), 0);
    assert_eq!(bare.stats.closed_cap.load(Ordering::SeqCst), 0);

    bare.release();
    let answer = waiting
        .await
        .expect("task")
        .expect("answered once a slot is free");
    assert_eq!(answer.status().as_u16(), 200);
    for request in busy {
        assert_eq!(request.await.expect("task").expect("answered"), 200);
    }
    bare.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_connection_limit_loses_its_oldest_idle_one_and_no_one_elses() {
    let bare = bare_server(bare_limits(100, 3), false).await;
    let port = bare.port;
    let mut other = connect_from(LOCALHOST_3, port).await;
    bare.open(1).await;
    let mut greedy = Vec::new();
    for n in 0..3 {
        greedy.push(connect_from(LOCALHOST_2, port).await);
        bare.open(n + 2).await;
    }
    greedy.push(connect_from(LOCALHOST_2, port).await);
    wait_for(Duration::from_secs(5), "one connection closed", || {
        bare.stats.closed_client_limit.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        closed_within(&mut greedy[0], Duration::from_secs(1)).await,
        "the greedy client's oldest connection is closed"
    );
    for (i, stream) in greedy.iter_mut().enumerate().skip(1) {
        assert!(
            !closed_within(stream, Duration::from_millis(100)).await,
            "the greedy client's connection {i} stays"
        );
    }
    assert!(
        !closed_within(&mut other, Duration::from_millis(100)).await,
        "another client's connection stays"
    );
    bare.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_the_cap_connections_silent_for_a_second_are_closed_early() {
    // 8 slots: past 6 (75 %), a connection that has sent nothing for 1 s is closed, though the
    // header timeout is 10 s.
    let bare = bare_server(bare_limits(8, 8), false).await;
    let port = bare.port;
    let mut silent = Vec::new();
    for _ in 0..7 {
        silent.push(connect_from(LOCALHOST_2, port).await);
    }
    let start = Instant::now();
    for (i, stream) in silent.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(3)).await,
            "silent connection {i} was still open after {:?}",
            start.elapsed()
        );
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
    // Below the pressure mark nothing is closed early.
    let mut calm = connect_from(LOCALHOST_2, port).await;
    assert!(!closed_within(&mut calm, Duration::from_millis(1_500)).await);
    assert_eq!(bare.stats.closed_idle_near_cap.load(Ordering::SeqCst), 7);
    bare.stop().await;
}

/// The soft limit on open files, read from `/proc` (raising it would need unsafe code).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_answered_within_a_second_while_1100_idle_connections_are_held() {
    const IDLE: usize = 1_100;
    // Both ends of every connection live in this process, next to the other tests' sockets.
    let needed = (2 * IDLE + 500) as u64;
    if let Some(limit) = open_files_limit().filter(|&l| l < needed) {
        eprintln!("SKIPPED: the open-files limit is {limit}, the test needs {needed} (ulimit -n)");
        return;
    }
    // The default limits: a 10 s header timeout, 1,024 connections, 256 per client.
    let app = spawn_app_with(Options {
        events: false,
        ..Options::default()
    })
    .await;
    app.started().await;
    let deal = new_deal(&app.sim, "Loris LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(connect_from(LOCALHOST_2, app.port).await);
    }
    connections_taken(&app, IDLE).await;

    // Each delivery on a new connection, as Bitrix24 sends them.
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let mut slowest = Duration::ZERO;
    for ts in 0..20 {
        let start = Instant::now();
        let status = fresh
            .post(app.events_url())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(app.event_body("ONCRMDEALUPDATE", deal, 1_800_000_000 + ts))
            .send()
            .await
            .expect("answered")
            .status();
        let took = start.elapsed();
        assert_eq!(status.as_u16(), 200);
        assert!(
            took < Duration::from_secs(1),
            "a delivery took {took:?} with {IDLE} idle connections held"
        );
        slowest = slowest.max(took);
    }
    eprintln!("slowest of 20 deliveries with {IDLE} idle connections held: {slowest:?}");
    drop(idle);
    app.settle(Duration::from_secs(20)).await;
    assert_eq!(app.task_counts(&[deal]), vec![1]);
    app.stop().await;
}

#[tokio::test]
async fn a_body_announced_over_max_body_is_refused_with_413_at_once() {
    let app = strict_app().await;
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect");
    // A billion bytes announced, none sent.
    let head = "POST /bitrix24/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000000000\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("head sent");
    let start = Instant::now();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut answer))
        .await
        .expect("answered before the request timeout")
        .expect("read");
    let took = start.elapsed();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(took < Duration::from_millis(500), "answered after {took:?}");
    assert_eq!(app.store.queue_len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_500_deliveries_for_one_deal_costs_a_few_reads() {
    let app = strict_app().await;
    let deal = new_deal(&app.sim, "Flood LLC").await;
    app.sim.move_deal_silently(deal, "PREPARATION").await;
    let reads_before = deal_reads(&app);

    // 500 distinct deliveries (distinct `ts`), 16 senders at once.
    let app = std::sync::Arc::new(app);
    let mut senders = Vec::new();
    for sender in 0..16u64 {
        let app = app.clone();
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in (sender..500).step_by(16) {
                statuses.push(timed_post(&app, deal, 1_800_000_000 + n).await.0);
            }
            statuses
        }));
    }
    for sender in senders {
        let statuses = sender.await.expect("sender");
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    app.settle(Duration::from_secs(20)).await;

    let reads = deal_reads(&app) - reads_before;
    assert_eq!(
        app.task_counts(&[deal]),
        vec![1],
        "one stage entry, one task"
    );
    // A round reads the deal once for every delivery recorded before it started; deliveries
    // that arrive during a round cost one more read after it. Measured: about 13 reads while
    // the other tests run alongside, 26 on a 2-core machine with three builds beside it; the
    // bound (a tenth of the deliveries) leaves room for that and still fails a read each.
    assert!(
        (1..=50).contains(&reads),
        "{reads} reads of the deal for 500 deliveries"
    );
}

/// `crm.deal.get` calls the portal ran, alone or inside a `batch`.
fn deal_reads(app: &TestApp) -> usize {
    app.sim
        .requests()
        .iter()
        .map(|r| {
            let read = |m: &str| m == "crm.deal.get" || m == "crm.deal.list";
            usize::from(read(&r.method)) + r.sub_methods.iter().filter(|m| read(m)).count()
        })
        .sum()
}
