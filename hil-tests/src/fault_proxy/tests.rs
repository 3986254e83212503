//! Each mode against a tiny local HTTP server (and an echo server for throttling).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::{FaultProxy, Mode, ModeKind, ModeStats};

const REQUEST: &[u8] = b"POST /v1/batches HTTP/1.1\r\nhost: sink\r\ncontent-length: 5\r\n\r\nhello";
const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
/// How long "nothing comes back" is watched for.
const QUIET: Duration = Duration::from_millis(300);
const LIMIT: Duration = Duration::from_secs(10);

/// Requests the HTTP server has fully read (it answers each one, keep-alive).
#[derive(Default)]
struct Served {
    requests: AtomicU64,
    changed: Notify,
}

impl Served {
    async fn wait(&self, n: u64) {
        tokio::time::timeout(LIMIT, async {
            loop {
                let notified = self.changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.requests.load(Ordering::SeqCst) >= n {
                    return;
                }
                notified.await;
            }
        })
        .await
        .expect("server saw the request");
    }
}

/// A server that reads fixed-size requests (`REQUEST.len()` bytes) and answers `ANSWER`.
async fn http_server() -> (SocketAddr, Arc<Served>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(Served::default());
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; REQUEST.len()];
                while s.read_exact(&mut buf).await.is_ok() {
                    counter.requests.fetch_add(1, Ordering::SeqCst);
                    counter.changed.notify_waiters();
                    if s.write_all(ANSWER).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, served)
}

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.into_split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn stats_until(
    proxy: &FaultProxy,
    kind: ModeKind,
    done: impl Fn(&ModeStats) -> bool,
) -> ModeStats {
    tokio::time::timeout(LIMIT, proxy.wait_stats(kind, done))
        .await
        .unwrap_or_else(|_| panic!("{kind:?} stats: {:?}", proxy.stats(kind)))
}

async fn request(proxy: &FaultProxy) -> TcpStream {
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(REQUEST).await.unwrap();
    c
}

/// Asserts nothing arrives (and the connection is not closed) for `QUIET`.
async fn assert_silent(c: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(QUIET, c.read(&mut buf)).await;
    assert!(read.is_err(), "expected silence, got {read:?}");
}

async fn assert_reset(c: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(LIMIT, c.read(&mut buf)).await.unwrap();
    assert_eq!(
        read.map_err(|e| e.kind()).err(),
        Some(ErrorKind::ConnectionReset),
        "expected RST"
    );
}

#[tokio::test]
async fn pass_forwards_both_ways_and_counts_bytes() {
    let (server, served) = http_server().await;
    let proxy = FaultProxy::start(server).await.unwrap();
    let mut c = request(&proxy).await;
    let mut answer = vec![0u8; ANSWER.len()];
    c.read_exact(&mut answer).await.unwrap();
    assert_eq!(answer, ANSWER);
    served.wait(1).await;
    let n = REQUEST.len() as u64;
    let s = stats_until(&proxy, ModeKind::Pass, |s| {
        s.answer_bytes == ANSWER.len() as u64
    })
    .await;
    assert_eq!((s.connections, s.client_bytes, s.upstream_bytes), (1, n, n));
    assert_eq!((s.dropped_answers, s.resets, s.discarded_bytes), (0, 0, 0));
}

#[tokio::test]
async fn blackhole_reads_and_never_answers() {
    let (server, served) = http_server().await;
    let proxy = FaultProxy::start(server).await.unwrap();
    proxy.set_mode(Mode::Blackhole);
    let mut c = request(&proxy).await;
    let s = stats_until(&proxy, ModeKind::Blackhole, |s| {
        s.client_bytes == REQUEST.len() as u64
    })
    .await;
    assert_silent(&mut c).await;
    assert_eq!((s.connections, s.upstream_bytes, s.answer_bytes), (1, 0, 0));
    assert_eq!(
        served.requests.load(Ordering::SeqCst),
        0,
        "nothing forwarded"
    );
}

#[tokio::test]
async fn reset_closes_with_rst() {
    let (server, served) = http_server().await;
    let proxy = FaultProxy::start(server).await.unwrap();
    proxy.set_mode(Mode::Reset);
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_reset(&mut c).await;
    let s = stats_until(&proxy, ModeKind::Reset, |s| s.resets == 1).await;
    assert_eq!(s.connections, 1);
    assert_eq!(served.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn half_open_forwards_the_request_and_withholds_the_answer() {
    let (server, served) = http_server().await;
    let proxy = FaultProxy::start(server).await.unwrap();
    proxy.set_mode(Mode::HalfOpen);
    let mut c = request(&proxy).await;
    served.wait(1).await;
    let s = stats_until(&proxy, ModeKind::HalfOpen, |s| s.dropped_answers == 1).await;
    assert_eq!(s.discarded_bytes, ANSWER.len() as u64);
    assert_eq!((s.answer_bytes, s.resets), (0, 0));
    // Still open: no answer, no FIN, no RST.
    assert_silent(&mut c).await;
}

#[tokio::test]
async fn ack_lost_lets_the_upstream_act_then_resets_the_client() {
    let (server, served) = http_server().await;
    let proxy = FaultProxy::start(server).await.unwrap();
    proxy.set_mode(Mode::AckLost);
    let mut c = request(&proxy).await;
    assert_reset(&mut c).await;
    served.wait(1).await;
    let s = stats_until(&proxy, ModeKind::AckLost, |s| s.resets == 1).await;
    assert_eq!((s.dropped_answers, s.answer_bytes), (1, 0));
    assert_eq!(s.upstream_bytes, REQUEST.len() as u64);
}

#[tokio::test]
async fn slow_throttles_both_directions() {
    let proxy = FaultProxy::start(echo_server().await).await.unwrap();
    proxy.set_mode(Mode::Slow {
        bytes_per_sec: 20_000,
    });
    let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
    let started = Instant::now();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    c.write_all(&data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    c.read_exact(&mut back).await.unwrap();
    let took = started.elapsed();
    assert_eq!(back, data);
    // 4000 bytes at 20 kB/s is 0.2 s each way; pipelined, at least ~0.2 s in all.
    assert!(took >= Duration::from_millis(190), "too fast: {took:?}");
    let s = stats_until(&proxy, ModeKind::Slow, |s| s.answer_bytes == 4000).await;
    assert_eq!(s.upstream_bytes, 4000);
}

#[tokio::test]
async fn switching_mode_closes_live_connections() {
    let (server, served) = http_server().await;
    let proxy = FaultProxy::start(server).await.unwrap();
    let mut c = request(&proxy).await;
    let mut answer = vec![0u8; ANSWER.len()];
    c.read_exact(&mut answer).await.unwrap();
    let handle = proxy.handle();
    handle.set_mode(Mode::Blackhole);
    assert_eq!(proxy.mode(), Mode::Blackhole);
    let mut buf = [0u8; 8];
    let eof = tokio::time::timeout(LIMIT, c.read(&mut buf)).await.unwrap();
    assert_eq!(eof.unwrap(), 0, "kept-alive connection closed on switch");
    // The next connection meets the new mode.
    let mut c = request(&proxy).await;
    stats_until(&proxy, ModeKind::Blackhole, |s| s.client_bytes > 0).await;
    assert_silent(&mut c).await;
    assert_eq!(served.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn unreachable_upstream_resets_the_client() {
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let proxy = FaultProxy::start(closed).await.unwrap();
    let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
    assert_reset(&mut c).await;
    let s = stats_until(&proxy, ModeKind::Pass, |s| s.resets == 1).await;
    assert_eq!(s.upstream_failures, 1);
}
