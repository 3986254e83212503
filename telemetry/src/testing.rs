//! A test OTLP/HTTP receiver (feature `testing`): an axum server on
//! 127.0.0.1 that accepts `POST /v1/traces` and `POST /v1/metrics` with
//! `application/x-protobuf` bodies, decodes them with opentelemetry-proto's
//! prost types and keeps what arrived, flattened, for assertions.
//!
//! It is for tests only: no auth, no gzip, everything kept in memory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use tokio::sync::Notify;

use crate::metrics::lock;

/// One received span.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The span's name.
    pub name: String,
    /// `service.name` of its resource.
    pub service: String,
    /// Its attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// Its id and its parent's (empty for a root span), hex.
    pub span_id: String,
    /// See `span_id`.
    pub parent_span_id: String,
    /// Its trace's id, hex.
    pub trace_id: String,
}

/// One received data point of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedPoint {
    /// The metric's name.
    pub metric: String,
    /// `sum`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// The point's attributes, values as text.
    pub attributes: BTreeMap<String, String>,
    /// The value (sum and gauge), or the observation count (histogram).
    pub value: f64,
    /// The histogram's sum (0 for others).
    pub sum: f64,
}

/// Everything received so far.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// Every span, in arrival order.
    pub spans: Vec<ReceivedSpan>,
    /// Every data point of every metrics export, in arrival order (a metric
    /// exported periodically appears once per export).
    pub points: Vec<ReceivedPoint>,
}

impl Received {
    /// The latest point of `metric` whose attributes include `attrs`.
    pub fn latest(&self, metric: &str, attrs: &[(&str, &str)]) -> Option<&ReceivedPoint> {
        self.points.iter().rev().find(|p| {
            p.metric == metric
                && attrs
                    .iter()
                    .all(|(k, v)| p.attributes.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Received>,
    arrived: Notify,
}

/// A running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl OtlpReceiver {
    /// Binds 127.0.0.1:0 and serves in a task of the current runtime.
    pub async fn start() -> std::io::Result<OtlpReceiver> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(OtlpReceiver { addr, shared, task })
    }

    /// The base URL to put in `otlp_endpoint`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of everything received so far.
    pub fn received(&self) -> Received {
        lock(&self.shared.received).clone()
    }

    /// Waits until `check` finds something in what was received (checked now
    /// and after every request), or `timeout` passes (`None`).
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        check: impl Fn(&Received) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(found) = check(&lock(&self.shared.received)) {
                return Some(found);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `None` for a protobuf request, else the 415 answer's text.
fn not_protobuf(headers: &HeaderMap) -> Option<String> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    (ct != Some("application/x-protobuf")).then(|| format!("content-type {ct:?}"))
}

fn answer(message: impl Message) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        message.encode_to_vec(),
    )
        .into_response()
}

async fn traces(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(why) = not_protobuf(&headers) {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, why).into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut spans = Vec::new();
    for rs in request.resource_spans {
        let service = service_of(rs.resource.as_ref().map(|r| &r.attributes[..]));
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(ReceivedSpan {
                    name: s.name,
                    service: service.clone(),
                    attributes: flatten(&s.attributes),
                    span_id: hex(&s.span_id),
                    parent_span_id: hex(&s.parent_span_id),
                    trace_id: hex(&s.trace_id),
                });
            }
        }
    }
    lock(&shared.received).spans.extend(spans);
    shared.arrived.notify_waiters();
    answer(ExportTraceServiceResponse::default())
}

async fn metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(why) = not_protobuf(&headers) {
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, why).into_response();
    }
    let request = match ExportMetricsServiceRequest::decode(body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let mut points = Vec::new();
    for rm in request.resource_metrics {
        for sm in rm.scope_metrics {
            for m in sm.metrics {
                let name = m.name;
                let point = |kind, attrs: &[KeyValue], value, sum| ReceivedPoint {
                    metric: name.clone(),
                    kind,
                    attributes: flatten(attrs),
                    value,
                    sum,
                };
                match m.data {
                    Some(metric::Data::Sum(s)) => points.extend(
                        s.data_points
                            .iter()
                            .map(|p| point("sum", &p.attributes, number(p.value), 0.0)),
                    ),
                    Some(metric::Data::Gauge(g)) => points.extend(
                        g.data_points
                            .iter()
                            .map(|p| point("gauge", &p.attributes, number(p.value), 0.0)),
                    ),
                    Some(metric::Data::Histogram(h)) => {
                        points.extend(h.data_points.iter().map(|p| {
                            let count = p.count as f64;
                            point("histogram", &p.attributes, count, p.sum.unwrap_or(0.0))
                        }));
                    }
                    _ => {}
                }
            }
        }
    }
    lock(&shared.received).points.extend(points);
    shared.arrived.notify_waiters();
    answer(ExportMetricsServiceResponse::default())
}

fn number(v: Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => d,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => f64::NAN,
    }
}

fn service_of(attrs: Option<&[KeyValue]>) -> String {
    attrs
        .map(flatten)
        .and_then(|a| a.get("service.name").cloned())
        .unwrap_or_default()
}

fn flatten(attrs: &[KeyValue]) -> BTreeMap<String, String> {
    attrs
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
