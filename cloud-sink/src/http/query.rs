//! The read endpoints: `/v1/health`, `/v1/gateways`, `/v1/devices`,
//! `/v1/series`, `/v1/escalations` and `/v1/escalations/agreement`.
//!
//! They only read; ingest is in `ingest.rs`. Query parameters are parsed by
//! hand so a bad one gets a 400 naming the parameter and what was expected.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{store_error, ApiError, AppState};
use crate::store::{EscalationQuery, SeriesQuery, DEFAULT_SERIES_LIMIT};
use crate::{agreement, fleet};

/// Largest `limit` a series query may ask for.
pub const MAX_SERIES_LIMIT: usize = 1_000_000;

/// `GET /v1/health` → `{"status":"ok","version":..,"counters":{..},"teacher":{..}}`.
pub(crate) async fn health(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "counters": state.stats.snapshot(),
        "teacher": state.teacher_stats.snapshot(),
    }))
}

/// `GET /v1/gateways` → JSON array of `GatewayInfo`.
pub(crate) async fn gateways(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let list = state.store.gateways().await.map_err(|e| store_error(&e))?;
    Ok(Json(json!(list)))
}

/// Raw `/v1/devices` parameters; empty values mean "not given".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceParams {
    gateway: Option<String>,
}

/// `GET /v1/devices?gateway=` → `{"devices":[DeviceSummary..],"truncated":bool}`:
/// each device's series, window counts, newest window, rows judged, alarms,
/// escalations and log lines (see [`fleet::summarize`]). It reads every stored
/// window of the gateway(s), at most [`MAX_SERIES_LIMIT`] (`truncated` beyond).
pub(crate) async fn devices(
    State(state): State<AppState>,
    params: Result<Query<DeviceParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| bad_query(&e, "gateway"))?;
    let query = SeriesQuery {
        gateway: p.gateway.filter(|s| !s.is_empty()),
        limit: MAX_SERIES_LIMIT + 1,
        ..SeriesQuery::default()
    };
    let windows = state
        .store
        .series(query)
        .await
        .map_err(|e| store_error(&e))?;
    let truncated = windows.len() > MAX_SERIES_LIMIT;
    let list = fleet::summarize(windows.iter().take(MAX_SERIES_LIMIT));
    Ok(Json(json!({ "devices": list, "truncated": truncated })))
}

/// Raw `/v1/series` parameters; empty values mean "not given".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeriesParams {
    gateway: Option<String>,
    device: Option<String>,
    metric: Option<String>,
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/series` → `{"windows":[..],"truncated":bool}`.
pub(crate) async fn series(
    State(state): State<AppState>,
    params: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) =
        params.map_err(|e| bad_query(&e, "gateway, device, metric, from, to, limit"))?;
    let query = parse_series(params).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let limit = query.limit;
    // Ask for one more than the limit to learn whether the answer was cut.
    let mut windows = state
        .store
        .series(SeriesQuery {
            limit: limit + 1,
            ..query
        })
        .await
        .map_err(|e| store_error(&e))?;
    let truncated = windows.len() > limit;
    windows.truncate(limit);
    Ok(Json(json!({ "windows": windows, "truncated": truncated })))
}

/// Raw `/v1/escalations` parameters; empty values mean "not given".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EscalationParams {
    gateway: Option<String>,
    device: Option<String>,
    series: Option<String>,
    limit: Option<String>,
}

/// `GET /v1/escalations` → `{"escalations":[..],"truncated":bool}`: rows the
/// gateways' models were unsure of, with their local verdict and input row
/// (and, for log lines, the redacted line), optionally of one `series`.
pub(crate) async fn escalations(
    State(state): State<AppState>,
    params: Result<Query<EscalationParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| bad_query(&e, "gateway, device, series, limit"))?;
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let limit =
        parse_limit(given(p.limit)).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    let query = EscalationQuery {
        gateway: given(p.gateway),
        device: given(p.device),
        series: given(p.series),
        limit: limit + 1,
    };
    let mut list = state
        .store
        .escalations(query)
        .await
        .map_err(|e| store_error(&e))?;
    let truncated = list.len() > limit;
    list.truncate(limit);
    Ok(Json(json!({ "escalations": list, "truncated": truncated })))
}

/// Raw `/v1/escalations/agreement` parameters; empty values mean "not given".
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgreementParams {
    gateway: Option<String>,
    device: Option<String>,
    series: Option<String>,
    buckets: Option<String>,
    to: Option<String>,
}

/// `GET /v1/escalations/agreement` → `{"range":[0,to],"overall":{..},
/// "by_series":{S:{..}}}`: how often the gateway's verdict on an escalated
/// row matched the teacher's, as totals, a 2×2 table and per bucket of local
/// confidence (`buckets` of them over `[0, to]`; `to` defaults to the largest
/// confidence seen).
pub(crate) async fn agreement(
    State(state): State<AppState>,
    params: Result<Query<AgreementParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(p) = params.map_err(|e| bad_query(&e, "gateway, device, series, buckets, to"))?;
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let buckets = match given(p.buckets) {
        None => agreement::DEFAULT_BUCKETS,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=agreement::MAX_BUCKETS).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "buckets: expected an integer from 1 to {}, got {s:?}",
                    agreement::MAX_BUCKETS
                ))
            })?,
    };
    let to = given(p.to)
        .map(|s| {
            s.parse::<f64>()
                .ok()
                .filter(|t| *t > 0.0 && *t <= 1.0)
                .ok_or_else(|| bad(format!("to: expected a confidence in (0, 1], got {s:?}")))
        })
        .transpose()?;
    let (gateway, device, series) = (given(p.gateway), given(p.device), given(p.series));
    let rows = state
        .store
        .agreement_rows(gateway, device, series)
        .await
        .map_err(|e| store_error(&e))?;
    Ok(Json(json!(agreement::report(&rows, buckets, to))))
}

/// A 400 for parameters that do not parse, naming the allowed ones.
fn bad_query(e: &QueryRejection, allowed: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("{} (allowed parameters: {allowed})", e.body_text()),
    )
}

/// A `limit` parameter: absent → the default; else 1..=[`MAX_SERIES_LIMIT`].
fn parse_limit(v: Option<String>) -> Result<usize, String> {
    match v {
        None => Ok(DEFAULT_SERIES_LIMIT),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_SERIES_LIMIT).contains(&n) => Ok(n),
            _ => Err(format!(
                "limit: expected an integer from 1 to {MAX_SERIES_LIMIT}, got {s:?}"
            )),
        },
    }
}

/// Turns raw parameters into a query, or a message naming the bad parameter.
pub(crate) fn parse_series(p: SeriesParams) -> Result<SeriesQuery, String> {
    let given = |v: Option<String>| v.filter(|s| !s.is_empty());
    let int = |name: &str, v: Option<String>| -> Result<Option<i64>, String> {
        given(v)
            .map(|s| {
                s.parse::<i64>().map_err(|_| {
                    format!("{name}: expected an integer (ms since the Unix epoch), got {s:?}")
                })
            })
            .transpose()
    };
    let from_ms = int("from", p.from)?;
    let to_ms = int("to", p.to)?;
    if let (Some(from), Some(to)) = (from_ms, to_ms) {
        if from > to {
            return Err(format!("from ({from}) must not be after to ({to})"));
        }
    }
    let limit = parse_limit(given(p.limit))?;
    Ok(SeriesQuery {
        gateway: given(p.gateway),
        device: given(p.device),
        metric: given(p.metric),
        from_ms,
        to_ms,
        limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(from: &str, to: &str, limit: &str) -> SeriesParams {
        SeriesParams {
            gateway: Some(String::new()),
            device: Some("d".into()),
            metric: None,
            from: Some(from.into()),
            to: Some(to.into()),
            limit: Some(limit.into()),
        }
    }

    #[test]
    fn empty_values_mean_absent_and_defaults_apply() {
        let q = parse_series(params("", "", "")).unwrap();
        assert_eq!(q.gateway, None);
        assert_eq!(q.device.as_deref(), Some("d"));
        assert_eq!(
            (q.from_ms, q.to_ms, q.limit),
            (None, None, DEFAULT_SERIES_LIMIT)
        );
        let q = parse_series(params("-5", "10", "7")).unwrap();
        assert_eq!((q.from_ms, q.to_ms, q.limit), (Some(-5), Some(10), 7));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        assert!(parse_series(params("x", "", ""))
            .unwrap_err()
            .starts_with("from:"));
        assert!(parse_series(params("", "1.5", ""))
            .unwrap_err()
            .starts_with("to:"));
        assert!(parse_series(params("", "", "0"))
            .unwrap_err()
            .starts_with("limit:"));
        assert!(parse_series(params("", "", "1000001"))
            .unwrap_err()
            .starts_with("limit:"));
        assert!(parse_series(params("5", "4", ""))
            .unwrap_err()
            .contains("after"));
    }
}
