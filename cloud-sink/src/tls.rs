//! HTTPS for the sink: the rustls server config from `[tls]` (optionally
//! requiring client certificates: mTLS), and an axum listener that does the
//! handshakes off the accept loop and tells handlers who is on the other end.
//!
//! It does not decide who a client *is*: [`Peer`] carries the client's leaf
//! certificate, and [`crate::auth`] maps it to a gateway (or not).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::{IncomingStream, Listener};
use edge_agent::tls::{read_certs, read_key, read_roots, TlsError};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::SinkTlsConfig;

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SinkTlsError {
    #[error(transparent)]
    Files(#[from] TlsError),
    #[error("tls.client_ca_file: {0}")]
    ClientCa(String),
    #[error("tls.cert_file / tls.key_file: {0}")]
    Certificate(String),
}

/// The rustls server config `[tls]` describes (HTTP/1.1 only, like the router).
pub fn server_config(tls: &SinkTlsConfig) -> Result<ServerConfig, SinkTlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SinkTlsError::Certificate(e.to_string()))?;
    let builder = match &tls.client_ca_file {
        Some(ca) => {
            let roots = read_roots("tls.client_ca_file", ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| SinkTlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let chain = read_certs("tls.cert_file", &tls.cert_file)?;
    let key = read_key("tls.key_file", &tls.key_file)?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| SinkTlsError::Certificate(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Who is on the other end of a connection, as handlers see it
/// (`ConnectInfo<Peer>`).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client's leaf certificate (DER), on an mTLS connection.
    pub client_cert: Option<Arc<[u8]>>,
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Peer {
        Peer {
            addr: *stream.remote_addr(),
            client_cert: None,
        }
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Peer {
        stream.remote_addr().clone()
    }
}

/// Accepts TCP connections and hands axum only those whose TLS handshake
/// succeeded. Handshakes run in their own tasks (a slow client cannot hold up
/// the others); failures are logged with the peer and counted.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    accept_task: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `config`.
    pub fn new(tcp: TcpListener, config: ServerConfig) -> std::io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = mpsc::channel(64);
        let failures = Arc::new(AtomicU64::new(0));
        let accept_task = tokio::spawn(async move {
            loop {
                let (stream, addr) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors and the like: do not spin.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, tx, failures) = (acceptor.clone(), tx.clone(), failures.clone());
                tokio::spawn(async move {
                    let shake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                    match shake.await {
                        Ok(Ok(tls)) => {
                            let client_cert = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|c| Arc::from(c.as_ref()));
                            let _ = tx.send((tls, Peer { addr, client_cert })).await;
                        }
                        Ok(Err(e)) => {
                            let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::warn!(peer = %addr, tls_failures = n, "TLS handshake failed: {e}");
                        }
                        Err(_) => {
                            let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::warn!(peer = %addr, tls_failures = n, "TLS handshake timed out after {HANDSHAKE_TIMEOUT:?}");
                        }
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            accept_task,
            local_addr,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept task is gone (only when aborted): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local_addr,
            client_cert: None,
        })
    }
}
