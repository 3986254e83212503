//! The agent's `GET /metrics` endpoint (`metrics_listen`): Prometheus text
//! (format 0.0.4) of [`AgentMetrics`], the outbox gauges read from the store
//! at each request. Every other path is 404.
//!
//! Only serving; what is measured is in `metrics.rs`. Off unless
//! `metrics_listen` is set; no TLS, no auth (bind it to 127.0.0.1 or a
//! management network).

use std::future::Future;
use std::net::SocketAddr;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::metrics::AgentMetrics;
use crate::store::Store;

/// `metrics_listen` could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("metrics_listen = \"{addr}\": cannot listen there")]
pub struct MetricsListenError {
    /// The configured address.
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A bound, not yet serving, metrics endpoint.
#[derive(Debug)]
pub struct MetricsEndpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

#[derive(Clone)]
struct Shared {
    metrics: AgentMetrics,
    store: Store,
}

impl MetricsEndpoint {
    /// Binds `addr` (port 0 picks a free port) at start-up, so a taken
    /// address fails the start, naming `metrics_listen`.
    pub async fn bind(addr: SocketAddr) -> Result<MetricsEndpoint, MetricsListenError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsListenError { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| MetricsListenError { addr, source })?;
        Ok(MetricsEndpoint { listener, addr })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `metrics` (the outbox gauges from `store`) until `stop` completes.
    pub async fn serve(
        self,
        metrics: AgentMetrics,
        store: Store,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = Router::new()
            .route("/metrics", get(prometheus))
            .with_state(Shared { metrics, store });
        axum::serve(self.listener, app)
            .with_graceful_shutdown(stop)
            .await
    }
}

async fn prometheus(State(shared): State<Shared>) -> impl IntoResponse {
    shared.metrics.observe_store(&shared.store);
    (
        [(header::CONTENT_TYPE, telemetry::PROMETHEUS_CONTENT_TYPE)],
        shared.metrics.registry.encode_prometheus(),
    )
}
