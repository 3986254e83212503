//! The MQTT source: rumqttc client, subscriptions, reconnects, and manual acks.
//!
//! The event loop is polled continuously (rumqttc needs it for keep-alives and
//! acks). Every QoS 1 publish is handed to the pipeline with an [`AckToken`];
//! nothing is acked here. The pipeline acks through [`MqttAcker`] only after the
//! message's effect is durable, so a crash means redelivery, never loss.
//! Sessions are persistent (`clean_session = false`); when the broker says it
//! kept no session, we subscribe again. Reconnects back off with jitter.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, Publish, QoS,
    TlsConfiguration, Transport,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::backoff::Backoff;
use crate::config::MqttConfig;

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
}

/// Acknowledges messages whose effect is durable. Never blocks: the pipeline
/// must keep consuming even while the MQTT event loop is busy or waiting.
pub trait Acker: Send {
    /// Queues acks for `tokens` and sends what can be sent now.
    fn ack(&mut self, tokens: Vec<AckToken>);
    /// Sends acks that could not be handed over earlier.
    fn flush(&mut self);
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
}

/// Why the source could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("mqtt.password_env: environment variable {0} is not set")]
    MissingPassword(String),
}

/// The running MQTT connection.
pub struct Source {
    client: AsyncClient,
    eventloop: EventLoop,
    subscribe: Vec<String>,
    backoff: Backoff,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, SourceError> {
    std::fs::read(path).map_err(|source| SourceError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Builds the client (it connects on first poll).
pub fn connect(cfg: &MqttConfig, queue: usize) -> Result<(Source, MqttAcker), SourceError> {
    let mut opts = MqttOptions::new(&cfg.client_id, &cfg.host, cfg.port);
    opts.set_keep_alive(cfg.keep_alive)
        .set_clean_session(false)
        .set_manual_acks(true)
        .set_max_packet_size(cfg.max_packet_size, cfg.max_packet_size);
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
        let client_auth = match (&tls.client_cert_file, &tls.client_key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: read(&tls.ca_file)?,
            alpn: None,
            client_auth,
        }));
    }
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
    };
    Ok((source, acker))
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("subscribe", &self.subscribe)
            .finish_non_exhaustive()
    }
}

impl Source {
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
                            let delivery = Delivery {
                                topic: p.topic.clone(),
                                payload: p.payload.clone(),
                                ack: AckToken(Some(p)),
                            };
                            if sender.send(delivery).await.is_err() {
                                tx = None;
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                        info!(session_present = ack.session_present, "mqtt connected");
                        self.backoff.reset();
                        if !ack.session_present {
                            self.subscribe_all();
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

    fn subscribe_all(&self) {
        for filter in &self.subscribe {
            if let Err(e) = self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                warn!("cannot queue subscription to {filter}: {e}");
            }
        }
    }

    async fn wait_after(&mut self, error: ConnectionError) {
        let delay = self.backoff.next_delay();
        warn!("mqtt connection: {error}; reconnecting in {delay:?}");
        tokio::time::sleep(delay).await;
    }
}
