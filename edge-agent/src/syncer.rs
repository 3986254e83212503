//! The syncer: ships outbox batches to cloud-sink, oldest first, and forgets them
//! only after the sink says they are durably stored.
//!
//! One batch in flight at a time keeps per-series order across outages. The
//! bytes sent are the ones sealed at cut time, so a retry carries the same
//! (gateway, epoch, seq) and body hash and the sink can deduplicate it.
//! Network errors, 5xx and auth failures are retried with capped, jittered
//! backoff, forever: the outbox is where data waits out an uplink that is down
//! for days. A 409 (the sink holds *different* bytes under this key) is an
//! alarm: the batch is moved to quarantine, logged loudly, and syncing goes on.
//! With `uplink.compression = "gzip"` (the default) each attempt sends the
//! sealed bytes gzip-compressed (`wire::transport`); the envelope is unchanged.
//! `[uplink.tls]` trusts a private CA and may present a client certificate
//! (mTLS). A 401 (token refused) is logged as an error naming what to fix; a
//! 429 (rate limit) waits at least the sink's `Retry-After`. Both keep the
//! batch: nothing leaves the outbox without a 2xx.
//! Each POST is a `sync.batch` span (epoch, seq, bytes, outcome) and counted
//! in `edge_agent_batches_sent_total{outcome}`; the batch it claims, always
//! the oldest, sets the sync lag (see `crate::metrics`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{debug, error, field, info, info_span, warn, Instrument};

use crate::backoff::Backoff;
use crate::config::{Compression, UplinkConfig};
use crate::health::{Health, HealthCount};
use crate::metrics::{AgentMetrics, SendOutcome};
use crate::store::{Store, StoreError};
use crate::tls::TlsError;

/// What the sink answered for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Stored now, or already stored earlier with the same hash.
    Stored,
    /// Same key, different body at the sink.
    Conflict,
    /// The sink refused the token (401): retried like [`Answer::Retry`], but
    /// logged as an error, since only a fixed token or config ends it.
    Unauthorized(String),
    /// Try again later: the reason for the log, and the least wait the sink
    /// asked for (`Retry-After` on a 429 or 503), if any.
    Retry {
        reason: String,
        after: Option<Duration>,
        /// A 429: the sink pacing this gateway, not a failure.
        rate_limited: bool,
    },
}

impl Answer {
    fn retry(reason: impl Into<String>) -> Answer {
        Answer::Retry {
            reason: reason.into(),
            after: None,
            rate_limited: false,
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by cloud-sink).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The HTTP client: `[uplink.tls]` when set (its CA only, optional client
/// certificate), else rustls with the built-in web roots.
fn http_client(uplink: &UplinkConfig) -> Result<reqwest::Client, TlsError> {
    let builder = reqwest::Client::builder().connect_timeout(uplink.request_timeout);
    let builder = match &uplink.tls {
        Some(tls) => builder.use_preconfigured_tls(crate::tls::client_config("uplink.tls", tls)?),
        None => builder,
    };
    builder.build().map_err(|e| TlsError::build("uplink", e))
}

/// Ships the outbox.
#[derive(Debug)]
pub struct Syncer {
    store: Store,
    http: reqwest::Client,
    endpoint: String,
    token: String,
    backoff: Backoff,
    outbox_ready: Arc<Notify>,
    request_timeout: Duration,
    min_link_rate: u64,
    compression: Compression,
    /// Answers 401 since start (for logs).
    unauthorized: u64,
    /// Failures and refusals, shipped in batches (see `crate::health`).
    health: Arc<Health>,
    metrics: AgentMetrics,
}

/// The envelope fields the syncer reports (CBOR map keys; the body is skipped).
#[derive(Debug, Clone, Copy, serde::Deserialize)]
struct Header {
    epoch: u64,
    created_ms: i64,
}

impl Header {
    /// The header of sealed bytes; `None` if they do not decode (the sink
    /// will say so).
    fn of(bytes: &[u8]) -> Option<Header> {
        wire::decode_capped(bytes, usize::MAX).ok()
    }
}

impl Syncer {
    /// Fails only when `[uplink.tls]` names files that do not make a TLS config.
    pub fn new(
        store: Store,
        uplink: &UplinkConfig,
        token: String,
        outbox_ready: Arc<Notify>,
    ) -> Result<Syncer, TlsError> {
        let http = http_client(uplink)?;
        Ok(Syncer {
            store,
            http,
            endpoint: format!("{}/v1/batches", uplink.url.trim_end_matches('/')),
            token,
            backoff: Backoff::new(uplink.retry_min, uplink.retry_max),
            outbox_ready,
            request_timeout: uplink.request_timeout,
            min_link_rate: uplink.min_link_rate.max(1),
            compression: uplink.compression,
            unauthorized: 0,
            health: Arc::default(),
            metrics: AgentMetrics::new(),
        })
    }

    /// Records each POST and the sync lag into `metrics`.
    pub fn with_metrics(mut self, metrics: AgentMetrics) -> Syncer {
        self.metrics = metrics;
        self
    }

    /// Counts uplink failures into `health` (the pipeline's; see `crate::health`).
    pub fn with_health(mut self, health: Arc<Health>) -> Syncer {
        self.health = health;
        self
    }

    /// How long one request of `len` bytes may take: the base timeout plus
    /// the transfer time at the slowest link rate the agent must work over.
    pub fn timeout_for(&self, len: usize) -> Duration {
        self.request_timeout + Duration::from_secs_f64(len as f64 / self.min_link_rate as f64)
    }

    /// Sends one envelope and classifies the answer.
    pub async fn send(&self, bytes: Vec<u8>) -> Answer {
        let mut request = self
            .http
            .post(&self.endpoint)
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/cbor");
        let bytes = match self.compression {
            Compression::None => bytes,
            Compression::Gzip => {
                request = request.header(reqwest::header::CONTENT_ENCODING, wire::transport::GZIP);
                match tokio::task::spawn_blocking(move || wire::transport::gzip(&bytes)).await {
                    Ok(packed) => packed,
                    Err(e) => return Answer::retry(format!("compressing the batch failed: {e}")),
                }
            }
        };
        let response = request
            .timeout(self.timeout_for(bytes.len()))
            .body(bytes)
            .send()
            .await;
        match response {
            Ok(r) if r.status().is_success() => Answer::Stored,
            Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => Answer::Conflict,
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                let text = r.text().await.unwrap_or_default();
                Answer::Unauthorized(format!("sink answered 401 Unauthorized: {}", text.trim()))
            }
            Ok(r) => {
                let status = r.status();
                let after = retry_after(r.headers());
                let text = r.text().await.unwrap_or_default();
                Answer::Retry {
                    reason: format!("sink answered {status}: {}", text.trim()),
                    after,
                    rate_limited: status == reqwest::StatusCode::TOO_MANY_REQUESTS,
                }
            }
            Err(e) => {
                let text = crate::tls::error_chain(&e);
                match crate::tls::explain_handshake(&text) {
                    Some(hint) => {
                        Answer::retry(format!("sink TLS handshake failed: {hint}; {text}"))
                    }
                    None => Answer::retry(format!("sink unreachable: {text}")),
                }
            }
        }
    }

    /// Runs until `stop` turns true. Returns early only if the store fails.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), StoreError> {
        let mut delivered = 0u64;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let Some((seq, bytes)) = self.store.outbox_claim_first()? else {
                self.metrics.set_oldest_unsent(None);
                self.metrics.observe_store(&self.store);
                if delivered > 0 {
                    info!(batches = delivered, "outbox drained");
                    delivered = 0;
                }
                tokio::select! {
                    _ = self.outbox_ready.notified() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            };
            let len = bytes.len();
            let header = Header::of(&bytes);
            self.metrics.set_oldest_unsent(header.map(|h| h.created_ms));
            self.metrics.observe_store(&self.store);
            let span = info_span!(
                "sync.batch",
                otel.kind = "client",
                epoch = header.map(|h| h.epoch),
                seq,
                bytes = len,
                outcome = field::Empty,
            );
            let answer = self.send(bytes).instrument(span.clone()).await;
            let outcome = match &answer {
                Answer::Stored => SendOutcome::Stored,
                Answer::Conflict => SendOutcome::Conflict,
                Answer::Unauthorized(_) => SendOutcome::Unauthorized,
                Answer::Retry {
                    rate_limited: true, ..
                } => SendOutcome::RateLimited,
                Answer::Retry { .. } => SendOutcome::Failed,
            };
            span.record("outcome", outcome.as_str());
            self.metrics.sent(outcome);
            match answer {
                Answer::Stored => {
                    let store = self.store.clone();
                    tokio::task::spawn_blocking(move || store.outbox_remove(seq))
                        .instrument(span)
                        .await
                        .expect("outbox removal does not panic")?;
                    self.metrics.set_oldest_unsent(None);
                    self.metrics.observe_store(&self.store);
                    self.backoff.reset();
                    delivered += 1;
                    debug!(seq, bytes = len, "batch delivered");
                }
                Answer::Conflict => {
                    drop(span);
                    self.health.add(HealthCount::UplinkConflicts, 1);
                    error!(
                        seq,
                        "ALARM: the sink holds a different batch under this gateway/epoch/seq; \
                         batch moved to quarantine in the outbox store"
                    );
                    self.store.outbox_quarantine(seq)?;
                    self.metrics.set_oldest_unsent(None);
                    self.metrics.observe_store(&self.store);
                }
                Answer::Unauthorized(reason) => {
                    drop(span);
                    let delay = self.backoff.next_delay();
                    self.unauthorized += 1;
                    self.health.add(HealthCount::UplinkUnauthorized, 1);
                    error!(
                        seq,
                        unauthorized = self.unauthorized,
                        "sink refused this gateway's token ({reason}); check uplink.token_env / \
                         token_file against the sink's [[gateways]] token_sha256; the batch \
                         stays in the outbox, retrying in {delay:?}"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                }
                Answer::Retry {
                    reason,
                    after,
                    rate_limited,
                } => {
                    drop(span);
                    let kind = if rate_limited {
                        HealthCount::UplinkRateLimited
                    } else {
                        HealthCount::UplinkFailures
                    };
                    self.health.add(kind, 1);
                    let delay = self.backoff.next_delay().max(after.unwrap_or_default());
                    warn!(seq, "batch not delivered ({reason}); retrying in {delay:?}");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    #[test]
    fn a_big_batch_gets_the_time_the_slowest_link_needs() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../configs/gateway.example.toml"
        ))
        .unwrap();
        let mut config = AgentConfig::parse(&text).unwrap();
        config.uplink.request_timeout = Duration::from_secs(10);
        config.uplink.min_link_rate = 4096;
        let syncer = Syncer::new(
            Store::open(tempfile::tempdir().unwrap().path(), 0)
                .unwrap()
                .0,
            &config.uplink,
            String::new(),
            Arc::default(),
        )
        .unwrap();
        assert_eq!(syncer.timeout_for(0), Duration::from_secs(10));
        // 500 KiB at 4 KiB/s is 125 s on top of the base timeout.
        assert_eq!(syncer.timeout_for(500 * 1024), Duration::from_secs(135));
    }
}
