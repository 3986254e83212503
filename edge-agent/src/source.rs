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
mod tests {
    use super::*;
    use crate::config::AgentConfig;
    use crate::decode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const SENSORS: &str = "plant/dev-1/sensors";

    fn mqtt_config(port: u16, max_packet_size: usize) -> MqttConfig {
        toml::from_str(&format!(
            "port = {port}\nclient_id = \"source-test\"\nsubscribe = [\"plant/#\"]\n\
             max_packet_size = {max_packet_size}\nreconnect_min = \"10ms\"\nreconnect_max = \"20ms\"\n"
        ))
        .unwrap()
    }

    #[test]
    fn transport_accepts_every_packet_mqtt_can_frame() {
        let opts = mqtt_options(&mqtt_config(1883, 4096)).unwrap();
        assert_eq!(opts.max_packet_size(), MQTT_MAX_REMAINING_LENGTH);
        assert!(!opts.clean_session());
        assert!(opts.manual_acks());
    }

    #[test]
    fn a_cut_payload_is_still_rejected_as_too_large() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../configs/gateway.example.toml");
        let settings = AgentConfig::load(&path).unwrap();
        let keep = settings.mqtt.max_packet_size;
        let route = settings
            .routes
            .iter()
            .find(|r| r.filter.matches("plant/pump-1/sensors"))
            .expect("a sensors route");
        let small = Bytes::from_static(b"{\"ts\":1700000000000,\"Current\":1.5}");
        assert_eq!(forwarded_payload(small.clone(), keep), small);
        let exactly = Bytes::from(vec![b' '; keep]);
        assert_eq!(forwarded_payload(exactly.clone(), keep).len(), keep);
        for size in [keep + 1, 3 * keep] {
            let cut = forwarded_payload(Bytes::from(vec![b'{'; size]), keep);
            assert_eq!(cut.len(), keep);
            assert_eq!(
                decode::decode(
                    &route.rules,
                    &settings.limits,
                    "plant/pump-1/sensors",
                    &cut,
                    0
                )
                .err(),
                Some(wire::Reason::TooLarge),
                "{size} bytes"
            );
        }
    }

    #[test]
    fn ack_token_keeps_no_payload() {
        let mut p = Publish::new(SENSORS, QoS::AtLeastOnce, vec![7u8; 1000]);
        p.pkid = 42;
        let AckToken(Some(kept)) = AckToken::for_publish(&p) else {
            panic!("no publish kept")
        };
        assert_eq!((kept.pkid, kept.qos), (42, QoS::AtLeastOnce));
        assert!(kept.payload.is_empty() && kept.topic.is_empty());
    }

    // A minimal MQTT 3.1.1 broker for one persistent session, enough to show what
    // the source does with a packet above rumqttc's limit: it queues QoS 1
    // publishes and, like Mosquitto, sends every unacknowledged one again, in
    // order, after each reconnect.

    fn packet(first: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let mut len = body.len();
        loop {
            let byte = (len % 128) as u8;
            len /= 128;
            out.push(if len > 0 { byte | 0x80 } else { byte });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(body);
        out
    }

    fn publish_qos1(pkid: u16, topic: &str, payload: &[u8], dup: bool) -> Vec<u8> {
        let mut body = (topic.len() as u16).to_be_bytes().to_vec();
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(&pkid.to_be_bytes());
        body.extend_from_slice(payload);
        packet(if dup { 0x3a } else { 0x32 }, &body)
    }

    async fn read_packet(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
        let first = s.read_u8().await.ok()?;
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let b = s.read_u8().await.ok()?;
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.ok()?;
        Some((first, body))
    }

    #[derive(Debug, PartialEq)]
    enum Seen {
        Connected(u32),
        Acked(u16),
    }

    async fn fake_broker(
        listener: TcpListener,
        queue: Vec<Vec<u8>>,
        seen: mpsc::UnboundedSender<Seen>,
    ) {
        let mut acked = vec![false; queue.len()];
        let mut connects = 0;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let Some((0x10, _)) = read_packet(&mut s).await else {
                continue;
            };
            connects += 1;
            let session_present = u8::from(connects > 1);
            if s.write_all(&[0x20, 2, session_present, 0]).await.is_err() {
                continue;
            }
            let _ = seen.send(Seen::Connected(connects));
            if connects == 1 {
                let Some((0x82, body)) = read_packet(&mut s).await else {
                    continue;
                };
                let _ = s.write_all(&[0x90, 3, body[0], body[1], 1]).await;
            }
            for (i, payload) in queue.iter().enumerate() {
                if !acked[i] {
                    let pkid = i as u16 + 1;
                    let bytes = publish_qos1(pkid, SENSORS, payload, connects > 1);
                    if s.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
            }
            while let Some((first, body)) = read_packet(&mut s).await {
                match first {
                    0x40 => {
                        let pkid = u16::from_be_bytes([body[0], body[1]]);
                        acked[usize::from(pkid) - 1] = true;
                        let _ = seen.send(Seen::Acked(pkid));
                    }
                    0xc0 => {
                        let _ = s.write_all(&[0xd0, 0]).await;
                    }
                    _ => {}
                }
            }
        }
    }

    struct Running {
        deliveries: mpsc::Receiver<Delivery>,
        seen: mpsc::UnboundedReceiver<Seen>,
        acker: MqttAcker,
        done: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    /// Starts the fake broker holding `queue` and a source built by `build`.
    async fn run_source(
        queue: Vec<Vec<u8>>,
        max_packet_size: usize,
        build: impl FnOnce(&MqttConfig) -> (Source, MqttAcker),
    ) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (seen_tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(fake_broker(listener, queue, seen_tx));
        let (source, acker) = build(&mqtt_config(port, max_packet_size));
        let (tx, deliveries) = mpsc::channel(16);
        let (stop_tx, stop) = watch::channel(false);
        let (done, pipeline_done) = oneshot::channel();
        let task = tokio::spawn(async move {
            let _keep_stop_open = stop_tx;
            source.run(tx, stop, pipeline_done).await;
        });
        Running {
            deliveries,
            seen,
            acker,
            done,
            task,
        }
    }

    const LIMIT: usize = 64 * 1024;

    fn oversized_then_normal() -> Vec<Vec<u8>> {
        vec![
            vec![b'x'; 3 * LIMIT],
            b"{\"ts\":1700000000000,\"Current\":1.5}".to_vec(),
        ]
    }

    #[tokio::test]
    async fn a_packet_above_max_packet_size_is_forwarded_cut_and_acked_without_a_reconnect() {
        let mut r = run_source(oversized_then_normal(), LIMIT, |cfg| {
            connect(cfg, 16).unwrap()
        })
        .await;
        let limit = Duration::from_secs(10);
        let big = tokio::time::timeout(limit, r.deliveries.recv())
            .await
            .unwrap()
            .unwrap();
        let small = tokio::time::timeout(limit, r.deliveries.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((big.topic.as_str(), big.payload.len()), (SENSORS, LIMIT));
        assert_eq!(
            small.payload.as_ref(),
            oversized_then_normal()[1].as_slice()
        );
        r.acker.ack(vec![big.ack, small.ack]);
        let mut events = Vec::new();
        while events.len() < 3 {
            let e = tokio::time::timeout(limit, r.seen.recv()).await.unwrap();
            events.push(e.unwrap());
        }
        assert_eq!(
            events,
            [Seen::Connected(1), Seen::Acked(1), Seen::Acked(2)],
            "one connection, both messages acked in order"
        );
        r.done.send(()).unwrap();
        r.task.await.unwrap();
    }

    /// Pins the rumqttc behaviour the module works around: with its incoming
    /// limit below a queued message, every reconnect ends on the same packet and
    /// nothing behind it is ever delivered.
    #[tokio::test]
    async fn rumqttc_limit_below_a_queued_message_stalls_the_session() {
        let mut r = run_source(oversized_then_normal(), LIMIT, |cfg| {
            let mut opts = mqtt_options(cfg).unwrap();
            opts.set_max_packet_size(cfg.max_packet_size, cfg.max_packet_size);
            with_options(opts, cfg, 16)
        })
        .await;
        let mut connects = 0;
        while connects < 4 {
            match tokio::time::timeout(Duration::from_secs(10), r.seen.recv()).await {
                Ok(Some(Seen::Connected(n))) => connects = n,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(
            r.deliveries.try_recv().is_err(),
            "nothing got through the oversized packet"
        );
        r.done.send(()).unwrap();
        r.task.await.unwrap();
    }
}
