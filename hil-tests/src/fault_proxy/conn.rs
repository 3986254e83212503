//! One proxied connection: the behaviour of each [`Mode`], with its byte counting.
//!
//! A connection keeps the mode it was accepted in and ends when the mode is switched.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::{Inner, Mode, ModeKind};

/// Largest read; a throttled direction reads about 50 ms worth at a time.
const CHUNK: usize = 16 * 1024;

/// Serves `client` in `mode` until it is done or the mode is switched (then both sides close).
pub(super) async fn serve(
    client: TcpStream,
    mode: Mode,
    mut switched: watch::Receiver<Mode>,
    inner: Arc<Inner>,
) {
    tokio::select! {
        () = behave(client, mode, &inner) => {}
        _ = switched.changed() => {}
    }
}

async fn behave(mut client: TcpStream, mode: Mode, inner: &Inner) {
    let kind = mode.kind();
    if mode == Mode::Reset {
        return reset(client, kind, inner);
    }
    if mode == Mode::Blackhole {
        // Read until the client gives up; nothing is ever sent back.
        let _ = discard(&mut client, kind, inner, Side::Client).await;
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(inner.upstream).await else {
        inner.count(kind, |s| s.upstream_failures += 1);
        return reset(client, kind, inner);
    };
    let _ = upstream.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.split();
    let (mut up_rx, mut up_tx) = upstream.split();
    let rate = match mode {
        Mode::Slow { bytes_per_sec } => Some(bytes_per_sec),
        _ => None,
    };
    let request = pump(&mut client_rx, &mut up_tx, rate, kind, inner, Side::Client);
    match mode {
        Mode::Pass | Mode::Slow { .. } => {
            let answer = pump(
                &mut up_rx,
                &mut client_tx,
                rate,
                kind,
                inner,
                Side::Upstream,
            );
            let _ = tokio::try_join!(request, answer);
        }
        Mode::HalfOpen => {
            // The client's write half stays open (and silent) until the client closes.
            let answer = discard(&mut up_rx, kind, inner, Side::Upstream);
            let _ = tokio::try_join!(request, answer);
        }
        Mode::AckLost => {
            let forward = async {
                let _ = request.await;
                std::future::pending::<()>().await;
            };
            let answered = tokio::select! {
                answered = first_answer(&mut up_rx, kind, inner) => answered,
                () = forward => false,
            };
            if answered {
                reset(client, kind, inner);
            }
        }
        Mode::Reset | Mode::Blackhole => unreachable!("handled above"),
    }
}

/// Which end a byte count belongs to.
#[derive(Debug, Clone, Copy)]
enum Side {
    Client,
    Upstream,
}

/// Closes `client` with RST (zero linger, then drop).
fn reset(client: TcpStream, kind: ModeKind, inner: &Inner) {
    let _ = client.set_zero_linger();
    drop(client);
    inner.count(kind, |s| s.resets += 1);
}

/// Copies `from` → `to` (throttled to `rate` bytes/s), then half-closes `to`.
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    rate: Option<u64>,
    kind: ModeKind,
    inner: &Inner,
    side: Side,
) -> io::Result<()> {
    let chunk = rate.map_or(CHUNK, |r| (r / 20).clamp(1, CHUNK as u64) as usize);
    let mut buf = vec![0u8; chunk];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        if let Side::Client = side {
            inner.count(kind, |s| s.client_bytes += n as u64);
        }
        if let Some(r) = rate {
            // Throttling is the point here, not waiting for an event.
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / r as f64)).await;
        }
        to.write_all(&buf[..n]).await?;
        inner.count(kind, |s| match side {
            Side::Client => s.upstream_bytes += n as u64,
            Side::Upstream => s.answer_bytes += n as u64,
        });
    }
}

/// Reads `from` to its end, throwing the bytes away; an upstream answer counts as dropped once.
async fn discard(
    from: &mut (impl AsyncRead + Unpin),
    kind: ModeKind,
    inner: &Inner,
    side: Side,
) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut first = true;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        inner.count(kind, |s| match side {
            Side::Client => s.client_bytes += n as u64,
            Side::Upstream => {
                s.discarded_bytes += n as u64;
                s.dropped_answers += u64::from(first);
            }
        });
        first = false;
    }
}

/// Waits for the upstream's first answer bytes and throws them away; false if it closed first.
async fn first_answer(from: &mut (impl AsyncRead + Unpin), kind: ModeKind, inner: &Inner) -> bool {
    let mut buf = vec![0u8; CHUNK];
    match from.read(&mut buf).await {
        Ok(n) if n > 0 => {
            inner.count(kind, |s| {
                s.discarded_bytes += n as u64;
                s.dropped_answers += 1;
            });
            true
        }
        _ => false,
    }
}
