//! `POST /v1/batches`: authenticate, rate-limit, size-check, inflate, open, authorize,
//! let the teacher judge the escalations, store once.
//!
//! Check order is cheapest-first and nothing untrusted is decoded before the
//! caller is authenticated and the size is known to be within the limit.
//! Each authenticated POST is one `ingest.batch` span (children
//! `teacher.judge` and `store.put`) and is measured (`crate::metrics`).
//! Queries are not here (see `query.rs`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, CONTENT_ENCODING, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::field::Empty;
use tracing::Instrument;
use wire::Envelope;

use super::{blocking, ApiError, AppState};
use crate::metrics::{Rejection, StoredBatch};
use crate::stats::Outcome;
use crate::store::PutOutcome;
use crate::tls::Peer;

/// The authenticated gateway id of the caller, within its rate limit.
///
/// As an extractor it runs before the body is read, so an unauthenticated or
/// rate-limited request is answered (401, 429) without buffering its body.
/// The identity comes from credentials only: an mTLS client certificate
/// pinned by `cert_sha256`, else the bearer token; never from the payload.
#[derive(Debug)]
pub(crate) struct Caller(pub String);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let cert = parts
            .extensions
            .get::<ConnectInfo<Peer>>()
            .and_then(|c| c.0.client_cert.clone());
        let id = match state.tokens.authenticate_request(cert.as_deref(), header) {
            Ok(id) => id.to_owned(),
            Err(e) => {
                state.stats.record(Outcome::Unauthorized);
                return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()).into_response());
            }
        };
        if let Err(wait) = state.rate.admit(&id) {
            state.stats.record(Outcome::RateLimited);
            tracing::debug!(gateway = %id, "rate limited");
            let message = format!(
                "gateway {id:?} is over limits.batches_per_second; retry in {}s",
                wait.as_secs()
            );
            let mut response =
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(wait.as_secs()));
            return Err(response);
        }
        Ok(Caller(id))
    }
}

/// Handles one uploaded envelope. See the crate docs for the response shapes.
pub(crate) async fn post_batch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!(
        "ingest.batch",
        otel.kind = "server",
        gateway = %caller,
        epoch = Empty,
        seq = Empty,
        windows = Empty,
        outcome = Empty,
        reason = Empty,
    );
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    let result = ingest(&state, caller, encoding, body)
        .instrument(span.clone())
        .await;
    let (outcome, response) = match result {
        Ok(done) => done,
        Err(rejected) => {
            if let Some(reason) = rejected.reason {
                state.metrics.rejected.with(&[reason.as_str()]).inc();
                span.record("reason", reason.as_str());
            }
            (rejected.outcome, rejected.error.into_response())
        }
    };
    state.stats.record(outcome);
    span.record("outcome", outcome.as_str());
    state.metrics.record_latency(started.elapsed());
    response
}

/// Why a batch was not stored: the outcome to count, the rejection reason
/// (none for a store failure) and the answer to give.
struct Rejected {
    outcome: Outcome,
    reason: Option<Rejection>,
    error: ApiError,
}

fn rejected(outcome: Outcome, reason: Rejection, status: StatusCode, message: String) -> Rejected {
    Rejected {
        outcome,
        reason: Some(reason),
        error: ApiError::new(status, message),
    }
}

/// The ingest steps; `Ok` is the outcome and the answer, `Err` why not.
async fn ingest(
    state: &AppState,
    caller: String,
    encoding: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Outcome, Response), Rejected> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let message = format!(
                "body exceeds the {}-byte limit (limits.max_body_bytes)",
                state.max_body_bytes
            );
            rejected(
                Outcome::TooLarge,
                Rejection::TooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                message,
            )
        } else {
            let message = format!("could not read body: {}", rejection.body_text());
            rejected(
                Outcome::Malformed,
                Rejection::ReadBody,
                StatusCode::BAD_REQUEST,
                message,
            )
        }
    })?;
    state
        .metrics
        .bytes_received
        .inc_by(u64::try_from(bytes.len()).unwrap_or(u64::MAX));

    let gzipped = match encoding.as_deref() {
        None | Some("identity") => false,
        Some(wire::transport::GZIP) => true,
        Some(other) => {
            let message =
                format!("unsupported Content-Encoding {other:?} (send gzip or no encoding)");
            return Err(rejected(
                Outcome::Malformed,
                Rejection::UnsupportedEncoding,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message,
            ));
        }
    };
    // Inflating (capped at the largest envelope), the size cap, version and hash
    // check inside `open`: decoding a few MB is CPU work, so keep it off the
    // async threads.
    let opened = tokio::task::spawn_blocking(move || {
        if !gzipped {
            return Ok(Envelope::open(&bytes));
        }
        let inflated = wire::transport::gunzip_capped(&bytes, wire::MAX_ENVELOPE_BYTES)?;
        Ok(Envelope::open(&inflated))
    })
    .await;
    let (env, body) = match opened {
        Ok(Ok(Ok(v))) => v,
        Ok(Err(wire::transport::InflateError::TooLarge { cap })) => {
            let message = format!("gzip body inflates beyond the {cap}-byte envelope cap");
            return Err(rejected(
                Outcome::TooLarge,
                Rejection::InflatesTooLarge,
                StatusCode::PAYLOAD_TOO_LARGE,
                message,
            ));
        }
        Ok(Err(e)) => {
            let message = format!("invalid gzip body: {e}");
            return Err(rejected(
                Outcome::Malformed,
                Rejection::BadGzip,
                StatusCode::BAD_REQUEST,
                message,
            ));
        }
        Ok(Ok(Err(e))) => {
            let message = format!("invalid envelope: {e}");
            return Err(rejected(
                Outcome::Malformed,
                Rejection::of_open_error(&e),
                StatusCode::BAD_REQUEST,
                message,
            ));
        }
        Err(e) => {
            let message = format!("decoder task failed: {e}");
            return Err(rejected(
                Outcome::Malformed,
                Rejection::DecoderTask,
                StatusCode::BAD_REQUEST,
                message,
            ));
        }
    };

    let span = tracing::Span::current();
    span.record("epoch", env.epoch);
    span.record("seq", env.seq);
    span.record("windows", body.windows.len());
    if env.gateway != caller {
        let message = format!(
            "token belongs to gateway {caller:?}, envelope is from {:?}",
            env.gateway
        );
        tracing::warn!(%caller, envelope_gateway = %env.gateway, "rejected batch for another gateway");
        return Err(rejected(
            Outcome::Forbidden,
            Rejection::WrongGateway,
            StatusCode::FORBIDDEN,
            message,
        ));
    }

    let received_ms = now_ms();
    let teachers = state.teachers.clone();
    // The teacher judges before the store is asked (outside the embedded
    // store's writer lock, outside any PostgreSQL transaction); only the
    // first stored copy of a batch keeps (and counts) its judgements.
    let escalations = body
        .windows
        .iter()
        .map(|w| w.escalations.len())
        .sum::<usize>();
    let judge_span = tracing::info_span!("teacher.judge", escalations);
    let (body, judged) = blocking(move || {
        let _entered = judge_span.enter();
        let judged = teachers.judge_body(&body);
        Ok::<_, std::convert::Infallible>((body, judged))
    })
    .await
    .map_err(|error| Rejected {
        outcome: Outcome::StoreError,
        reason: None,
        error,
    })?;
    let locals = body.windows.iter().flat_map(|w| &w.escalations);
    let pairs: Vec<_> = judged
        .iter()
        .copied()
        .zip(locals.map(|e| e.alarm))
        .collect();
    let judge_time = judged.elapsed;
    let windows = body.windows.len();
    let counters = body.counters.clone();
    let outcome = state
        .store
        .put_batch(env.clone(), body, judged.per_window, received_ms)
        .instrument(tracing::info_span!("store.put", windows))
        .await
        .map_err(|e| {
            tracing::warn!(gateway = %env.gateway, epoch = env.epoch, seq = env.seq, error = %super::error_chain(&e), "store failed");
            Rejected {
                outcome: Outcome::StoreError,
                reason: None,
                error: super::store_error(&e),
            }
        })?;
    let judgements = pairs;

    let (gateway, epoch, seq) = (&env.gateway, env.epoch, env.seq);
    let response = match outcome {
        PutOutcome::Stored => {
            for (judgement, local_alarm) in &judgements {
                state.teacher_stats.record(judgement, *local_alarm);
            }
            if !judgements.is_empty() {
                state.teacher_stats.record_time(judge_time);
            }
            state.metrics.record_stored(&StoredBatch {
                gateway,
                windows: u64::try_from(windows).unwrap_or(u64::MAX),
                escalations: u64::try_from(escalations).unwrap_or(u64::MAX),
                counters: &counters,
                created_ms: env.created_ms,
                received_ms,
            });
            tracing::debug!(%gateway, epoch, seq, "stored batch");
            let body = json!({"status": "stored", "gateway": gateway, "epoch": epoch, "seq": seq});
            (
                Outcome::Stored,
                (StatusCode::OK, Json(body)).into_response(),
            )
        }
        PutOutcome::Duplicate => {
            tracing::info!(%gateway, epoch, seq, "duplicate batch acknowledged");
            let body =
                json!({"status": "duplicate", "gateway": gateway, "epoch": epoch, "seq": seq});
            (
                Outcome::Duplicate,
                (StatusCode::OK, Json(body)).into_response(),
            )
        }
        PutOutcome::Conflict { stored_hash } => {
            let received_hash = env.body_hash_hex();
            tracing::error!(
                %gateway, epoch, seq, %stored_hash, %received_hash,
                "ALARM: batch key reused with a different body; rejected, stored data kept"
            );
            let body = json!({
                "status": "conflict", "gateway": gateway, "epoch": epoch, "seq": seq,
                "stored_hash": stored_hash, "received_hash": received_hash,
            });
            (
                Outcome::Conflict,
                (StatusCode::CONFLICT, Json(body)).into_response(),
            )
        }
    };
    Ok(response)
}

/// Sink wall-clock time in ms since the Unix epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
