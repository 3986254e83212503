//! cloud-sink: receives CBOR batches from edge gateways, stores each exactly
//! once per (gateway, epoch, seq) in an embedded sled store or in PostgreSQL
//! (`[store] backend`), and serves a JSON query API.
//!
//! This file wires the pieces together ([`Server`], [`serve`]); it has no
//! request logic of its own. The binary (`main.rs`) adds CLI, logging and
//! signals.
//!
//! # HTTP API
//!
//! * `POST /v1/batches` — body: `wire::Envelope::to_bytes()` (application/cbor),
//!   header `Authorization: Bearer <token>`, optionally `Content-Encoding: gzip`
//!   (inflated under the envelope cap; agents send gzip by default). Answers:
//!   * 200 `{"status":"stored","gateway":G,"epoch":E,"seq":S}` — new, durably stored;
//!   * 200 `{"status":"duplicate","gateway":G,"epoch":E,"seq":S}` — already stored;
//!   * 409 `{"status":"conflict","gateway":G,"epoch":E,"seq":S,"stored_hash":H1,"received_hash":H2}`;
//!   * 401 / 403 / 400 / 413 / 415 / 503 `{"error":"<reason>"}` (missing or unknown
//!     token / token of another gateway / invalid envelope or gzip / body over
//!     `limits.max_body_bytes` or inflating past the envelope cap / another
//!     Content-Encoding / store failure: retry). 422 when PostgreSQL cannot
//!     hold a value of the batch (a NUL in the gateway id or a counter name;
//!     NUL in window text is stored as U+FFFD).
//! * `GET /v1/health` — `{"status":"ok","version":V,"counters":{"stored":N,..}}`.
//! * `GET /v1/gateways` — `[{"id","batches","windows","last_seen_ms","last_batch","counters"}]`.
//! * `GET /v1/devices?gateway=` — `{"devices":[{"gateway","device","windows",
//!   "last_end_ms","judged","alarms","anomalous_windows","escalations","log_lines",
//!   "metrics":{M:{"windows","first_start_ms","last_start_ms","last_width_ms",
//!   "judgement","template"}}}],"truncated":bool}` (see [`fleet`]).
//! * `GET /v1/series?gateway=&device=&metric=&from=&to=&limit=` —
//!   `{"windows":[{"gateway","epoch","seq", ..every WindowSummary field..}],"truncated":bool}`,
//!   ordered by gateway, device, metric, start_ms; `from` inclusive, `to` exclusive.
//! * `GET /v1/escalations?gateway=&device=&limit=` — `{"escalations":[{"gateway",
//!   "epoch","seq","device","series","window_start_ms","escalation":{ts_ms,alarm,
//!   score,confidence,features},"teacher":{score,threshold,alarm}|null,
//!   "teacher_skipped"?:reason}],"truncated":bool}`: the gateway's verdict and
//!   the teacher's (judged once, when the batch was stored).
//! * `GET /v1/escalations/agreement?gateway=&device=&series=&buckets=&to=` —
//!   `{"range":[0,to],"overall":A,"by_series":{S:A}}`, A = totals, agree /
//!   disagree, the 2×2 local-vs-teacher table, per confidence bucket counts
//!   and agreement rate (see [`agreement`]).
//! * `GET /metrics` — Prometheus text (format 0.0.4) of the sink's instruments
//!   (see [`metrics::SinkMetrics`]); the same values go to OTLP with `[telemetry]`.
//! * `GET /` — the fleet dashboard (HTML; `/assets/app.js`, `/assets/style.css`),
//!   embedded in the binary, drawn in the browser from the endpoints above.

pub mod agreement;
pub mod auth;
pub mod calibrate;
pub mod config;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod rate;
pub mod sink_store;
pub mod stats;
pub mod store;
pub mod teacher;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{
    Backend, ConfigError, ConfigProblem, GatewayConfig, Hashes, Limits, PgTlsConfig, PgTlsMode,
    SinkConfig, SinkTlsConfig, StoreConfig, TeacherConfig,
};
pub use pg::{PgError, PgStore};
pub use sink_store::{SinkStore, SinkStoreError};
pub use store::{
    EmbeddedStore, GatewayInfo, PutOutcome, SeriesQuery, StoreError, StoredEscalation,
    StoredWindow, TeacherJudgement, TeacherSkip, TeacherVerdict,
};
pub use teacher::{TeacherError, Teachers};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The config failed validation (every problem is listed).
    #[error("invalid config: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigProblem>),
    /// The store could not be opened or closed cleanly.
    #[error("store {location}")]
    Store {
        /// The data directory, or the PostgreSQL URL (password redacted) and schema.
        location: String,
        #[source]
        source: SinkStoreError,
    },
    /// A teacher model or its sidecar could not be loaded.
    #[error("teacher model")]
    Teacher(#[from] TeacherError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The `[tls]` files do not make a TLS config.
    #[error("tls")]
    Tls(#[from] tls::SinkTlsError),
    /// The accept loop failed.
    #[error("server I/O")]
    Io(#[from] std::io::Error),
}

/// A bound, not yet running server. Bind first to learn the address (port 0
/// picks a free one), then [`Server::run`].
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: http::AppState,
    location: String,
    tls: Option<rustls::ServerConfig>,
}

impl Server {
    /// Validates `config`, opens the store (the sled directory `data_dir`, or
    /// PostgreSQL: connect with retries, migrate) and binds `listen`.
    /// Teacher models and the `[tls]` files are loaded first: a missing or
    /// wrong one stops start-up.
    pub async fn bind(config: &SinkConfig) -> Result<Server, ServerError> {
        Server::bind_with_metrics(config, metrics::SinkMetrics::new()).await
    }

    /// [`Server::bind`] recording into `metrics`, e.g. a registry that
    /// `telemetry::init` already exports over OTLP.
    pub async fn bind_with_metrics(
        config: &SinkConfig,
        metrics: metrics::SinkMetrics,
    ) -> Result<Server, ServerError> {
        config.validate().map_err(ServerError::Config)?;
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let teacher_configs = config.teachers.clone();
        let teachers = tokio::task::spawn_blocking(move || Teachers::load(&teacher_configs))
            .await
            .map_err(std::io::Error::other)??;
        let location = SinkStore::describe(config);
        let store = SinkStore::open(config)
            .await
            .map_err(|source| ServerError::Store {
                location: location.clone(),
                source,
            })?;
        let listener =
            TcpListener::bind(&config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen.clone(),
                    source,
                })?;
        let local_addr = listener.local_addr()?;
        let state = http::AppState {
            store,
            tokens: Arc::new(auth::TokenTable::new(&config.gateways)),
            stats: metrics.ingest.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            rate: Arc::new(rate::RateLimiter::new(
                config.limits.batches_per_second,
                config.limits.burst,
            )),
            teachers: Arc::new(teachers),
            teacher_stats: metrics.teacher.clone(),
            metrics,
        };
        Ok(Server {
            listener,
            local_addr,
            state,
            location,
            tls,
        })
    }

    /// `https` with `[tls]`, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish,
    /// flushes and closes the store (so the directory can be reopened; a
    /// PostgreSQL pool is closed).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            listener,
            state,
            location,
            tls,
            ..
        } = self;
        let store = state.store.clone();
        let app = http::router(state).into_make_service_with_connect_info::<tls::Peer>();
        match tls {
            Some(config) => {
                let listener = tls::TlsListener::new(listener, config)?;
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await?
            }
        }
        store
            .close()
            .await
            .map_err(|source| ServerError::Store { location, source })?;
        Ok(())
    }
}

/// Binds and runs the sink until `shutdown` completes.
pub async fn serve(
    config: SinkConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(&config).await?.run(shutdown).await
}
