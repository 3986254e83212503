//! The HTTP API: the router, its shared state and the JSON error shape.
//!
//! Handlers live in `ingest.rs` (POST /v1/batches) and `query.rs` (GETs);
//! `dashboard.rs` serves the fleet dashboard's static files at `/`; `GET
//! /metrics` (Prometheus text) is the one-line `metrics` handler below.
//! This module binds no socket; `Server` in `lib.rs` does that.

mod dashboard;
mod ingest;
mod query;

pub use dashboard::CONTENT_SECURITY_POLICY;
pub use query::MAX_SERIES_LIMIT;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::auth::TokenTable;
use crate::metrics::SinkMetrics;
use crate::sink_store::{SinkStore, SinkStoreError};
use crate::stats::{IngestStats, TeacherStats};
use crate::teacher::Teachers;

/// Everything the handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The configured store (embedded or PostgreSQL).
    pub store: SinkStore,
    /// Token hashes of the configured gateways.
    pub tokens: Arc<TokenTable>,
    /// Ingest outcome counters shown in `/v1/health`.
    pub stats: Arc<IngestStats>,
    /// Largest accepted batch body, in bytes.
    pub max_body_bytes: usize,
    /// Per-gateway ingest rate limit (`limits.batches_per_second`).
    pub rate: Arc<crate::rate::RateLimiter>,
    /// The teacher models re-judging escalations at ingest.
    pub teachers: Arc<Teachers>,
    /// Teacher outcome counters shown in `/v1/health`.
    pub teacher_stats: Arc<TeacherStats>,
    /// Every instrument (`GET /metrics`, OTLP); `stats` and `teacher_stats`
    /// are its `ingest` and `teacher`.
    pub metrics: SinkMetrics,
}

/// Builds the router:
///
/// * `POST /v1/batches` — ingest one envelope (application/cbor, bearer token);
/// * `GET /v1/health` — liveness, version and ingest counters;
/// * `GET /v1/gateways` — per-gateway totals;
/// * `GET /v1/devices?gateway=` — per-device summaries (series, windows, verdicts);
/// * `GET /v1/series?gateway=&device=&metric=&from=&to=&limit=` — stored windows;
/// * `GET /v1/escalations?gateway=&device=&limit=` — escalated rows with
///   the gateway's and the teacher's verdicts;
/// * `GET /v1/escalations/agreement?gateway=&device=&series=&buckets=&to=` —
///   local-vs-teacher agreement statistics;
/// * `GET /metrics` — Prometheus text exposition (format 0.0.4);
/// * `GET /`, `/assets/app.js`, `/assets/style.css` — the fleet dashboard.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route(
            "/v1/batches",
            post(ingest::post_batch).layer(DefaultBodyLimit::max(limit)),
        )
        .route("/v1/health", get(query::health))
        .route("/v1/gateways", get(query::gateways))
        .route("/v1/devices", get(query::devices))
        .route("/v1/series", get(query::series))
        .route("/v1/escalations", get(query::escalations))
        .route("/v1/escalations/agreement", get(query::agreement))
        .route("/metrics", get(metrics))
        .merge(dashboard::routes())
        .with_state(state)
}

/// `GET /metrics`: every instrument of the sink's registry as Prometheus text.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let text = state.metrics.registry.encode_prometheus();
    ([(CONTENT_TYPE, telemetry::PROMETHEUS_CONTENT_TYPE)], text).into_response()
}

/// An error answer: `status` with body `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// Runs blocking store work off the async threads; a panicked or cancelled
/// task becomes a 503 like any other store failure.
pub(crate) async fn blocking<T, E>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    E: std::error::Error + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {}", error_chain(&e)),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store task failed: {e}"),
        )),
    }
}

/// A failed store call as an answer: 503 (retry later), or 422 when the
/// batch itself cannot be stored.
pub(crate) fn store_error(e: &SinkStoreError) -> ApiError {
    if e.is_permanent() {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error_chain(e))
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {}", error_chain(e)),
        )
    }
}

/// `error: cause: cause…` — an error with every source, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
