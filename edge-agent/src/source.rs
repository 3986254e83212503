//! The MQTT source: rumqttc client, subscriptions, reconnects, and manual acks.
//!
//! The event loop is polled continuously (rumqttc needs it for keep-alives and
//! acks). Every QoS 1 publish is handed to the pipeline with an [`AckToken`];
//! nothing is acked here. The pipeline acks through [`MqttAcker`] only after the
//! message's effect is durable, so a crash means redelivery, never loss.
//! Sessions are persistent (`clean_session = false`); when the broker says it
//! kept no session, we subscribe again. Reconnects back off with jitter.
//!
//! # Oversized messages
//!
//! rumqttc (0.25, MQTT 3.1.1) treats an incoming packet above its
//! `max_incoming_packet_size` as a protocol error: it reads only the fixed
//! header, returns `PayloadSizeLimitExceeded` and drops the connection. The
//! publish was never acked, so with a persistent session the broker sends the
//! same packet first again after every reconnect: ingest stops for good (and
//! every drop can redeliver, and so double-count, messages without a `seq`).
//! So the transport limit is set to what MQTT itself can frame
//! ([`MQTT_MAX_REMAINING_LENGTH`]): the connection never breaks on size, every
//! message arrives, and the pipeline counts one above `limits.max_payload_bytes`
//! as `too_large` and acks it like any other rejected input. What the agent holds
//! per queued message stays bounded by `mqtt.max_packet_size`: a payload above it
//! is cut here to a fresh copy of its first `max_packet_size` bytes (validation
//! keeps that above `limits.max_payload_bytes`, so the cut payload is still
//! `too_large`) and the ack token keeps no payload, so the big buffer is freed as
//! soon as it is read. The one packet being read is bounded by the broker's
//! `message_size_limit`.
//!
//! Rejected alternatives: an MQTT 5 connection with Maximum Packet Size makes
//! the broker discard oversized messages silently (MQTT 5 §3.1.2.11.4: "as if
//! it had completed sending"), so the agent could not count them, and it would
//! mean rumqttc's separate v5 client; escalating the limit after each error
//! still drops the connection once per message.
//!
//! # TLS
//!
//! `[mqtt.tls]` builds a rustls config once at start-up (`crate::tls`: a bad
//! PEM file stops the agent with the key that names it). A refused handshake
//! (unknown CA, expired certificate, client certificate missing or refused) is
//! logged at error level with what it most likely means, counted
//! (`tls_failures=` in the line), and retried with the usual backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS,
    SubscribeReasonCode, TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::config::MqttConfig;
use crate::decode::sparkplug::Command;
use crate::health::{Health, HealthCount};

/// One received message on its way to the pipeline.
#[derive(Debug)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    pub ack: AckToken,
}

/// What the pipeline hands back to ack a message once it is durable.
#[derive(Debug)]
pub struct AckToken(Option<Publish>);

impl AckToken {
    /// A token that acks nothing (tests, replays).
    pub fn none() -> AckToken {
        AckToken(None)
    }

    /// A token for `publish` that keeps only what a PUBACK needs (packet id,
    /// QoS): holding the payload until the commit would keep an oversized
    /// message's whole buffer alive after [`forwarded_payload`] cut it.
    fn for_publish(publish: &Publish) -> AckToken {
        AckToken(Some(Publish {
            dup: publish.dup,
            qos: publish.qos,
            retain: publish.retain,
            topic: String::new(),
            pkid: publish.pkid,
            payload: Bytes::new(),
        }))
    }
}

/// The largest remaining length an MQTT packet can declare (four-byte variable
/// byte integer, MQTT 3.1.1 §2.2.3). Used as rumqttc's incoming limit so that no
/// packet the broker can send breaks the connection (see the module docs).
pub const MQTT_MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The payload handed to the pipeline: `payload` itself when it is at most
/// `keep` bytes, else a copy of its first `keep` bytes. With `keep` =
/// `mqtt.max_packet_size` (> `limits.max_payload_bytes`, checked by validation)
/// the decoder still rejects the cut payload as `too_large` before parsing it,
/// and the copy lets the original buffer go.
pub fn forwarded_payload(payload: Bytes, keep: usize) -> Bytes {
    if payload.len() <= keep {
        payload
    } else {
        Bytes::copy_from_slice(&payload[..keep])
    }
}

/// The pipeline's way back to the broker: acknowledges messages whose effect
/// is durable, and publishes the few messages the agent itself sends
/// (Sparkplug rebirth requests). Never blocks: the pipeline must keep
/// consuming even while the MQTT event loop is busy or waiting.
pub trait Acker: Send {
    /// Queues acks for `tokens` and sends what can be sent now.
    fn ack(&mut self, tokens: Vec<AckToken>);
    /// Sends acks that could not be handed over earlier.
    fn flush(&mut self);
    /// Publishes `command` at QoS 0, not retained, if the client can take it
    /// now; false if it cannot (nothing is kept for later).
    fn publish(&mut self, command: &Command) -> bool;
}

/// Acks to the broker through the rumqttc client, from the pipeline's thread.
///
/// rumqttc's request channel is bounded and drained only while the event loop
/// is polled, and the event loop may itself be waiting for the pipeline to take
/// a message. Blocking here would deadlock the two, so acks that do not fit are
/// kept and retried on the next [`Acker::flush`].
#[derive(Debug)]
pub struct MqttAcker {
    client: AsyncClient,
    pending: VecDeque<Publish>,
}

impl Acker for MqttAcker {
    fn ack(&mut self, tokens: Vec<AckToken>) {
        self.pending.extend(tokens.into_iter().filter_map(|t| t.0));
        self.flush();
    }

    fn flush(&mut self) {
        while let Some(publish) = self.pending.front() {
            // Full (or closed, at shutdown): keep the rest for later. If the
            // connection dropped meanwhile, the broker redelivers and the
            // duplicate is recognised downstream; nothing is lost.
            if self.client.try_ack(publish).is_err() {
                break;
            }
            self.pending.pop_front();
        }
    }

    fn publish(&mut self, command: &Command) -> bool {
        self.client
            .try_publish(
                command.topic.as_str(),
                QoS::AtMostOnce,
                false,
                command.payload.clone(),
            )
            .is_ok()
    }
}

/// Why the source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("mqtt.password_env: environment variable {0} is not set")]
    MissingPassword(String),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// The running MQTT connection.
pub struct Source {
    client: AsyncClient,
    eventloop: EventLoop,
    subscribe: Vec<String>,
    backoff: Backoff,
    /// Payloads above this are forwarded cut (see [`forwarded_payload`]).
    max_payload_kept: usize,
    /// Messages forwarded cut since start (for logs).
    oversized: u64,
    /// Connection attempts that failed in or right after the TLS handshake.
    tls_failures: u64,
    /// Connects, errors and refusals, shipped in batches (see `crate::health`).
    health: Arc<Health>,
}

/// Builds the client (it connects on first poll).
pub fn connect(cfg: &MqttConfig, queue: usize) -> Result<(Source, MqttAcker), SourceError> {
    Ok(with_options(mqtt_options(cfg)?, cfg, queue))
}

/// The rumqttc options for `cfg`: persistent session, manual acks, no incoming
/// size limit below MQTT's own (outgoing packets are only acks and subscriptions).
fn mqtt_options(cfg: &MqttConfig) -> Result<MqttOptions, SourceError> {
    let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    opts.set_keep_alive(cfg.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(MQTT_MAX_REMAINING_LENGTH, cfg.max_packet_size);
    if let Some(user) = &cfg.username {
        let password = match &cfg.password_env {
            Some(var) => {
                std::env::var(var).map_err(|_| SourceError::MissingPassword(var.clone()))?
            }
            None => String::new(),
        };
        opts.set_credentials(user, password);
    }
    if let Some(tls) = &cfg.tls {
        let config = crate::tls::client_config("mqtt.tls", tls)?;
        opts.set_transport(Transport::Tls(TlsConfiguration::Rustls(Arc::new(config))));
    }
    Ok(opts)
}

fn with_options(opts: MqttOptions, cfg: &MqttConfig, queue: usize) -> (Source, MqttAcker) {
    // Room for a full delivery queue's worth of acks plus subscriptions.
    let (client, eventloop) = AsyncClient::new(opts, queue.saturating_mul(2).clamp(64, 1 << 20));
    let acker = MqttAcker {
        client: client.clone(),
        pending: VecDeque::new(),
    };
    let source = Source {
        client,
        eventloop,
        subscribe: cfg.subscribe.clone(),
        backoff: Backoff::new(cfg.reconnect_min, cfg.reconnect_max),
        max_payload_kept: cfg.max_packet_size,
        oversized: 0,
        tls_failures: 0,
        health: Arc::default(),
    };
    (source, acker)
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("subscribe", &self.subscribe)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Counts connection events into `health` (the pipeline's; see `crate::health`).
    pub fn with_health(mut self, health: Arc<Health>) -> Source {
        self.health = health;
        self
    }

    /// Polls until `pipeline_done` fires. After `stop` turns true, new messages
    /// are no longer forwarded (and so not acked: the broker keeps them).
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Delivery>,
        mut stop: watch::Receiver<bool>,
        mut pipeline_done: oneshot::Receiver<()>,
    ) {
        let mut tx = Some(tx);
        loop {
            tokio::select! {
                event = self.eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(sender) = &tx {
                            let delivery = self.delivery(p);
                            if sender.send(delivery).await.is_err() {
                                tx = None;
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        info!(session_present = ack.session_present, "mqtt connected");
                        self.health.add(HealthCount::MqttConnects, 1);
                        self.backoff.reset();
                        if !ack.session_present {
                            self.subscribe_all();
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        // One filter per SUBSCRIBE (see `subscribe_all`).
                        if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                            self.health.add(HealthCount::MqttSubscribeRefused, 1);
                            error!(
                                pkid = ack.pkid,
                                "mqtt broker refused a subscription (its ACL?): no messages arrive for that filter"
                            );
                        } else {
                            info!(pkid = ack.pkid, "mqtt subscribed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => self.wait_after(e).await,
                },
                changed = stop.changed(), if tx.is_some() => {
                    if changed.is_err() || *stop.borrow() {
                        tx = None;
                    }
                }
                _ = &mut pipeline_done => break,
            }
        }
        let _ = self.client.try_disconnect();
        // Give the disconnect (and last acks) a moment to go out.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while self.eventloop.poll().await.is_ok() {}
        })
        .await;
    }

    /// The pipeline's view of `p`: topic, payload (cut when oversized), ack token.
    fn delivery(&mut self, p: Publish) -> Delivery {
        let ack = AckToken::for_publish(&p);
        let size = p.payload.len();
        let payload = forwarded_payload(p.payload, self.max_payload_kept);
        if payload.len() < size {
            self.oversized += 1;
            debug!(
                topic = %p.topic,
                bytes = size,
                total = self.oversized,
                "payload above mqtt.max_packet_size; forwarding its first {} bytes (counted as too_large)",
                payload.len()
            );
        }
        Delivery {
            topic: p.topic,
            payload,
            ack,
        }
    }

    fn subscribe_all(&self) {
        for filter in &self.subscribe {
            if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                warn!("cannot queue subscription to {filter}: {e}");
            }
        }
    }

    async fn wait_after(&mut self, error: ConnectionError) {
        let delay = self.backoff.next_delay();
        let text = crate::tls::error_chain(&error);
        let hint = crate::tls::explain_handshake(&text);
        self.health.add(HealthCount::MqttErrors, 1);
        if matches!(error, ConnectionError::Tls(_)) || hint.is_some() {
            self.tls_failures += 1;
            self.health.add(HealthCount::MqttTlsFailures, 1);
            error!(
                tls_failures = self.tls_failures,
                "mqtt TLS handshake failed: {}; {text}; reconnecting in {delay:?}",
                hint.unwrap_or("see the error")
            );
        } else {
            warn!("mqtt connection: {text}; reconnecting in {delay:?}");
        }
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests;
