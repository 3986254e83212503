//! A TCP fault proxy for the agent → sink uplink: forwards, blackholes, resets, half-opens,
//! throttles or loses the upstream's answer, switchable at run time, and counts what it did.
//!
//! It works on bytes, not HTTP: an "answer" is whatever the upstream sends back, and the proxy
//! never invents one. It does not retry, reorder or corrupt bytes. Changing the mode closes every
//! live connection (FIN), so keep-alive connections cannot outlive the mode they were opened in.

mod conn;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};

/// What the proxy does with a connection accepted while this mode is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Pass,
    /// Accept, read and discard, never answer, never close.
    Blackhole,
    /// Accept, then close at once with a TCP RST.
    Reset,
    /// Forward the request to the upstream, discard its answer, keep the connection open.
    HalfOpen,
    /// Forward both ways, each direction throttled to this rate.
    Slow {
        /// Bytes per second per direction (at least 1).
        bytes_per_sec: u64,
    },
    /// Forward the request; when the upstream answers, discard the answer and reset the
    /// client: the upstream has acted, the client never learns it.
    AckLost,
}

/// A [`Mode`] without its parameters: the key of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModeKind {
    /// [`Mode::Pass`].
    Pass,
    /// [`Mode::Blackhole`].
    Blackhole,
    /// [`Mode::Reset`].
    Reset,
    /// [`Mode::HalfOpen`].
    HalfOpen,
    /// [`Mode::Slow`].
    Slow,
    /// [`Mode::AckLost`].
    AckLost,
}

impl ModeKind {
    /// Every kind.
    pub const ALL: [ModeKind; 6] = [
        ModeKind::Pass,
        ModeKind::Blackhole,
        ModeKind::Reset,
        ModeKind::HalfOpen,
        ModeKind::Slow,
        ModeKind::AckLost,
    ];
}

impl Mode {
    /// The counter key of this mode.
    pub fn kind(self) -> ModeKind {
        match self {
            Mode::Pass => ModeKind::Pass,
            Mode::Blackhole => ModeKind::Blackhole,
            Mode::Reset => ModeKind::Reset,
            Mode::HalfOpen => ModeKind::HalfOpen,
            Mode::Slow { .. } => ModeKind::Slow,
            Mode::AckLost => ModeKind::AckLost,
        }
    }
}

/// What happened to connections accepted in one mode (counts only grow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeStats {
    /// Client connections accepted.
    pub connections: u64,
    /// Bytes read from clients.
    pub client_bytes: u64,
    /// Bytes written to the upstream.
    pub upstream_bytes: u64,
    /// Upstream bytes delivered to clients.
    pub answer_bytes: u64,
    /// Upstream bytes read and thrown away.
    pub discarded_bytes: u64,
    /// Connections whose upstream answer was thrown away (half-open, ack-lost).
    pub dropped_answers: u64,
    /// Client connections closed with RST.
    pub resets: u64,
    /// Upstream connects that failed (the client is then reset).
    pub upstream_failures: u64,
}

/// State shared by the accept loop, the connections and every handle.
#[derive(Debug)]
struct Inner {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    stats: Mutex<[ModeStats; ModeKind::ALL.len()]>,
    changed: Notify,
}

impl Inner {
    /// Updates the counters of `kind` and wakes everyone waiting on them.
    fn count(&self, kind: ModeKind, update: impl FnOnce(&mut ModeStats)) {
        update(&mut self.stats.lock().expect("stats lock")[kind as usize]);
        self.changed.notify_waiters();
    }
}

/// Cheap, cloneable control of a running proxy.
#[derive(Debug, Clone)]
pub struct ProxyHandle {
    inner: Arc<Inner>,
}

impl ProxyHandle {
    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://<addr>`: the URL to give the client instead of the upstream's.
    pub fn url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The address connections are forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.inner.upstream
    }

    /// The mode new connections get.
    pub fn mode(&self) -> Mode {
        *self.inner.mode.borrow()
    }

    /// Switches the mode. If it differs from the current one, every live connection is
    /// closed, so the next request of a keep-alive client meets the new mode.
    pub fn set_mode(&self, mode: Mode) {
        if let Mode::Slow { bytes_per_sec } = mode {
            assert!(bytes_per_sec > 0, "Slow needs bytes_per_sec > 0");
        }
        self.inner.mode.send_if_modified(|m| {
            let changed = *m != mode;
            *m = mode;
            changed
        });
    }

    /// A snapshot of the counters of connections accepted in `kind` mode.
    pub fn stats(&self, kind: ModeKind) -> ModeStats {
        self.inner.stats.lock().expect("stats lock")[kind as usize]
    }

    /// Waits (without polling) until the counters of `kind` satisfy `done`, and returns them.
    /// Wrap it in `tokio::time::timeout` to bound the wait.
    pub async fn wait_stats(&self, kind: ModeKind, done: impl Fn(&ModeStats) -> bool) -> ModeStats {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.stats(kind);
            if done(&now) {
                return now;
            }
            notified.await;
        }
    }
}

/// A running proxy on 127.0.0.1; stops (closing every connection) when dropped.
#[derive(Debug)]
pub struct FaultProxy {
    handle: ProxyHandle,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, starting in `Pass` mode.
    /// Must be called inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let inner = Arc::new(Inner {
            addr: listener.local_addr()?,
            upstream,
            mode: watch::Sender::new(Mode::Pass),
            stats: Mutex::new([ModeStats::default(); ModeKind::ALL.len()]),
            changed: Notify::new(),
        });
        let task = tokio::spawn(accept_loop(listener, inner.clone()));
        Ok(FaultProxy {
            handle: ProxyHandle { inner },
            task,
        })
    }

    /// A handle to switch modes and read counters (valid while the proxy runs).
    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }
}

impl std::ops::Deref for FaultProxy {
    type Target = ProxyHandle;
    fn deref(&self) -> &ProxyHandle {
        &self.handle
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, inner: Arc<Inner>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    // Subscribe before reading the mode: a switch right after is still seen.
                    let switched = inner.mode.subscribe();
                    let mode = *switched.borrow();
                    inner.count(mode.kind(), |s| s.connections += 1);
                    conns.spawn(conn::serve(client, mode, switched, inner.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "fault proxy: accept failed"),
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
