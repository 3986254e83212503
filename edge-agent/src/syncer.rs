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

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::config::{Compression, UplinkConfig};
use crate::store::{Store, StoreError};

/// What the sink answered for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Stored now, or already stored earlier with the same hash.
    Stored,
    /// Same key, different body at the sink.
    Conflict,
    /// Try again later (with the reason for the log).
    Retry(String),
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
}

impl Syncer {
    pub fn new(
        store: Store,
        uplink: &UplinkConfig,
        token: String,
        outbox_ready: Arc<Notify>,
    ) -> Syncer {
        let http = reqwest::Client::builder()
            .connect_timeout(uplink.request_timeout)
            .build()
            .expect("HTTP client with default TLS settings builds");
        Syncer {
            store,
            http,
            endpoint: format!("{}/v1/batches", uplink.url.trim_end_matches('/')),
            token,
            backoff: Backoff::new(uplink.retry_min, uplink.retry_max),
            outbox_ready,
            request_timeout: uplink.request_timeout,
            min_link_rate: uplink.min_link_rate.max(1),
            compression: uplink.compression,
        }
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
                    Err(e) => return Answer::Retry(format!("compressing the batch failed: {e}")),
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
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                Answer::Retry(format!("sink answered {status}: {}", text.trim()))
            }
            Err(e) => Answer::Retry(format!("sink unreachable: {e}")),
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
            match self.send(bytes).await {
                Answer::Stored => {
                    let store = self.store.clone();
                    tokio::task::spawn_blocking(move || store.outbox_remove(seq))
                        .await
                        .expect("outbox removal does not panic")?;
                    self.backoff.reset();
                    delivered += 1;
                    debug!(seq, bytes = len, "batch delivered");
                }
                Answer::Conflict => {
                    error!(
                        seq,
                        "ALARM: the sink holds a different batch under this gateway/epoch/seq; \
                         batch moved to quarantine in the outbox store"
                    );
                    self.store.outbox_quarantine(seq)?;
                }
                Answer::Retry(reason) => {
                    let delay = self.backoff.next_delay();
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
        );
        assert_eq!(syncer.timeout_for(0), Duration::from_secs(10));
        // 500 KiB at 4 KiB/s is 125 s on top of the base timeout.
        assert_eq!(syncer.timeout_for(500 * 1024), Duration::from_secs(135));
    }
}
