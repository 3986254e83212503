//! `POST /v1/batches`: authenticate, rate-limit, size-check, inflate, open, authorize,
//! let the teacher judge the escalations, store once.
//!
//! Check order is cheapest-first and nothing untrusted is decoded before the
//! caller is authenticated and the size is known to be within the limit.
//! Queries are not here (see `query.rs`).

use std::time::{SystemTime, UNIX_EPOCH};

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
use wire::Envelope;

use super::{blocking, ApiError, AppState};
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
    let encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase());
    match ingest(&state, caller, encoding, body).await {
        Ok(response) => response,
        Err((outcome, error)) => {
            state.stats.record(outcome);
            error.into_response()
        }
    }
}

/// The ingest steps; an `Err` names the counter to bump and the answer to give.
async fn ingest(
    state: &AppState,
    caller: String,
    encoding: Option<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, (Outcome, ApiError)> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let message = format!(
                "body exceeds the {}-byte limit (limits.max_body_bytes)",
                state.max_body_bytes
            );
            (
                Outcome::TooLarge,
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            )
        } else {
            let message = format!("could not read body: {}", rejection.body_text());
            (
                Outcome::Malformed,
                ApiError::new(StatusCode::BAD_REQUEST, message),
            )
        }
    })?;

    let gzipped = match encoding.as_deref() {
        None | Some("identity") => false,
        Some(wire::transport::GZIP) => true,
        Some(other) => {
            let message =
                format!("unsupported Content-Encoding {other:?} (send gzip or no encoding)");
            return Err((
                Outcome::Malformed,
                ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message),
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
            return Err((
                Outcome::TooLarge,
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            ));
        }
        Ok(Err(e)) => {
            let message = format!("invalid gzip body: {e}");
            return Err((
                Outcome::Malformed,
                ApiError::new(StatusCode::BAD_REQUEST, message),
            ));
        }
        Ok(Ok(Err(e))) => {
            let message = format!("invalid envelope: {e}");
            return Err((
                Outcome::Malformed,
                ApiError::new(StatusCode::BAD_REQUEST, message),
            ));
        }
        Err(e) => {
            let message = format!("decoder task failed: {e}");
            return Err((
                Outcome::Malformed,
                ApiError::new(StatusCode::BAD_REQUEST, message),
            ));
        }
    };

    if env.gateway != caller {
        let message = format!(
            "token belongs to gateway {caller:?}, envelope is from {:?}",
            env.gateway
        );
        tracing::warn!(%caller, envelope_gateway = %env.gateway, "rejected batch for another gateway");
        return Err((
            Outcome::Forbidden,
            ApiError::new(StatusCode::FORBIDDEN, message),
        ));
    }

    let received_ms = now_ms();
    let teachers = state.teachers.clone();
    // The teacher judges before the store is asked (outside the embedded
    // store's writer lock, outside any PostgreSQL transaction); only the
    // first stored copy of a batch keeps (and counts) its judgements.
    let (body, judged) = blocking(move || {
        let judged = teachers.judge_body(&body);
        Ok::<_, std::convert::Infallible>((body, judged))
    })
    .await
    .map_err(|e| (Outcome::StoreError, e))?;
    let locals = body.windows.iter().flat_map(|w| &w.escalations);
    let pairs: Vec<_> = judged
        .iter()
        .copied()
        .zip(locals.map(|e| e.alarm))
        .collect();
    let judge_time = judged.elapsed;
    let outcome = state
        .store
        .put_batch(env.clone(), body, judged.per_window, received_ms)
        .await
        .map_err(|e| {
            tracing::warn!(gateway = %env.gateway, epoch = env.epoch, seq = env.seq, error = %super::error_chain(&e), "store failed");
            (Outcome::StoreError, super::store_error(&e))
        })?;
    let judgements = pairs;

    let (gateway, epoch, seq) = (&env.gateway, env.epoch, env.seq);
    let response = match outcome {
        PutOutcome::Stored => {
            state.stats.record(Outcome::Stored);
            for (judgement, local_alarm) in &judgements {
                state.teacher_stats.record(judgement, *local_alarm);
            }
            state.teacher_stats.record_time(judge_time);
            tracing::debug!(%gateway, epoch, seq, "stored batch");
            let body = json!({"status": "stored", "gateway": gateway, "epoch": epoch, "seq": seq});
            (StatusCode::OK, Json(body)).into_response()
        }
        PutOutcome::Duplicate => {
            state.stats.record(Outcome::Duplicate);
            tracing::info!(%gateway, epoch, seq, "duplicate batch acknowledged");
            let body =
                json!({"status": "duplicate", "gateway": gateway, "epoch": epoch, "seq": seq});
            (StatusCode::OK, Json(body)).into_response()
        }
        PutOutcome::Conflict { stored_hash } => {
            state.stats.record(Outcome::Conflict);
            let received_hash = env.body_hash_hex();
            tracing::error!(
                %gateway, epoch, seq, %stored_hash, %received_hash,
                "ALARM: batch key reused with a different body; rejected, stored data kept"
            );
            let body = json!({
                "status": "conflict", "gateway": gateway, "epoch": epoch, "seq": seq,
                "stored_hash": stored_hash, "received_hash": received_hash,
            });
            (StatusCode::CONFLICT, Json(body)).into_response()
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
