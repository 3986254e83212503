//! Publishes a fixed set of messages at QoS 1 and tracks which ones the broker PUBACKed,
//! reconnecting with backoff and republishing every unacknowledged message on a new session.
//!
//! Messages are identified by their index in the set; callers publish each index once (in
//! their own order) and read back which were acknowledged. It does not pace, plan or write
//! ledgers. Each connection attempt uses a fresh rumqttc client (clean session), so nothing
//! is silently dropped by rumqttc's own session handling: this module resends instead.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

/// Connection settings.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id.
    pub client_id: String,
    /// Max unacknowledged publishes in flight.
    pub inflight: u16,
    /// Max MQTT packet size, both directions.
    pub max_packet_size: usize,
    /// Give up when no connection succeeded for this long.
    pub retry_timeout: Duration,
}

/// Counters shared with progress reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Distinct messages handed to the client so far.
    pub published: usize,
    /// Distinct messages acknowledged so far.
    pub acked: usize,
    /// Successful (re)connections.
    pub connects: u64,
}

/// Bookkeeping of which message is where. Only touched in short critical sections.
#[derive(Debug)]
struct Tracker {
    generation: u64,
    /// Handed to the current client, waiting for rumqttc to assign a packet id (in order).
    unassigned: VecDeque<usize>,
    /// Packet id → message index, sent and awaiting PUBACK.
    inflight: HashMap<u16, usize>,
    acked: Vec<bool>,
    first_published: Vec<bool>,
    /// Indices in the order they were first published.
    order: Vec<usize>,
    progress: Progress,
}

#[derive(Debug)]
struct Shared {
    tracker: Mutex<Tracker>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Tracker> {
        // A poisoned lock only means another task panicked mid-update; the data is still usable.
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Gate {
    client: AsyncClient,
    driver: JoinHandle<()>,
}

/// Error: the broker stayed unreachable for longer than the retry timeout.
#[derive(Debug, thiserror::Error)]
#[error("broker {addr} unreachable for {waited:?}: {last_error}")]
pub struct BrokerUnreachable {
    /// `host:port`.
    pub addr: String,
    /// How long we tried.
    pub waited: Duration,
    /// The last connection error.
    pub last_error: String,
}

/// The publisher. Share it behind an `Arc`; call [`AckedPublisher::publish`] from any task.
#[derive(Debug)]
pub struct AckedPublisher {
    config: PublisherConfig,
    messages: Vec<(String, Bytes)>,
    shared: Arc<Shared>,
    gate: tokio::sync::Mutex<Gate>,
    errors_tx: mpsc::UnboundedSender<(u64, String)>,
    errors_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(u64, String)>>,
}

impl AckedPublisher {
    /// Creates the publisher for `messages` (topic, payload) and starts connecting.
    pub fn start(config: PublisherConfig, messages: Vec<(String, Bytes)>) -> Self {
        let n = messages.len();
        let shared = Arc::new(Shared {
            tracker: Mutex::new(Tracker {
                generation: 0,
                unassigned: VecDeque::new(),
                inflight: HashMap::new(),
                acked: vec![false; n],
                first_published: vec![false; n],
                order: Vec::with_capacity(n),
                progress: Progress::default(),
            }),
            changed: Notify::new(),
        });
        let (errors_tx, errors_rx) = mpsc::unbounded_channel();
        let gate = connect(&config, 0, &shared, &errors_tx);
        Self {
            config,
            messages,
            shared,
            gate: tokio::sync::Mutex::new(gate),
            errors_tx,
            errors_rx: tokio::sync::Mutex::new(errors_rx),
        }
    }

    /// Hands message `index` to the broker connection. Returns once it is queued (not acked).
    /// Calls are serialized, so messages published by one task keep their order.
    pub async fn publish(&self, index: usize) {
        let gate = self.gate.lock().await;
        {
            let mut t = self.shared.lock();
            if !t.first_published[index] {
                t.first_published[index] = true;
                t.order.push(index);
                t.progress.published += 1;
            }
            t.unassigned.push_back(index);
        }
        let (topic, payload) = &self.messages[index];
        // An error means this connection's event loop is gone: the supervisor resends `index`.
        let _ = gate
            .client
            .publish_bytes(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
            .await;
    }

    /// Current counters.
    pub fn progress(&self) -> Progress {
        self.shared.lock().progress
    }

    /// Supervises the connection until every message is acked and `all_published` resolved:
    /// on each connection error waits with backoff, reconnects and republishes the unacked.
    pub async fn supervise(
        &self,
        all_published: impl std::future::Future<Output = ()>,
    ) -> Result<(), BrokerUnreachable> {
        let mut errors = self.errors_rx.lock().await;
        let mut all_published = std::pin::pin!(all_published);
        let mut published_done = false;
        let mut backoff = Duration::from_millis(100);
        let mut last_good = Instant::now();
        let mut last_connects = 0;
        loop {
            let (acked, connects) = {
                let t = self.shared.lock();
                (t.progress.acked, t.progress.connects)
            };
            if connects != last_connects {
                last_connects = connects;
                backoff = Duration::from_millis(100);
                last_good = Instant::now();
            }
            if published_done && acked == self.messages.len() {
                return Ok(());
            }
            tokio::select! {
                _ = &mut all_published, if !published_done => published_done = true,
                _ = self.shared.changed.notified() => {}
                Some((generation, error)) = errors.recv() => {
                    if generation != self.shared.lock().generation {
                        continue;
                    }
                    // Hold the gate through the outage so publishers wait instead of spinning.
                    let mut gate = self.gate.lock().await;
                    gate.driver.abort();
                    if last_good.elapsed() > self.config.retry_timeout {
                        return Err(BrokerUnreachable {
                            addr: format!("{}:{}", self.config.host, self.config.port),
                            waited: last_good.elapsed(),
                            last_error: error,
                        });
                    }
                    tracing::warn!(%error, ?backoff, "broker connection lost; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    self.reconnect(&mut gate).await;
                }
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }

    /// Starts a new session and republishes every unacknowledged message in index order
    /// (which keeps each device's order). Caller holds the gate.
    async fn reconnect(&self, gate: &mut Gate) {
        let resend: Vec<usize> = {
            let mut t = self.shared.lock();
            t.generation += 1;
            let mut ids: Vec<usize> = t.unassigned.drain(..).collect();
            ids.extend(t.inflight.drain().map(|(_, id)| id));
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let generation = self.shared.lock().generation;
        *gate = connect(&self.config, generation, &self.shared, &self.errors_tx);
        for (pos, &id) in resend.iter().enumerate() {
            self.shared.lock().unassigned.push_back(id);
            let (topic, payload) = &self.messages[id];
            let sent = gate
                .client
                .publish_bytes(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                .await;
            if sent.is_err() {
                // This session died too; leave the rest for the next round.
                let mut t = self.shared.lock();
                t.unassigned.extend(resend[pos + 1..].iter().copied());
                break;
            }
        }
    }

    /// Sends DISCONNECT and stops the event loop.
    pub async fn shutdown(&self) {
        let gate = self.gate.lock().await;
        let _ = gate.client.disconnect().await;
        let deadline = Instant::now() + Duration::from_secs(1);
        while !gate.driver.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        gate.driver.abort();
    }

    /// Whether each message was acknowledged, and the order of first publication.
    pub fn outcome(&self) -> (Vec<bool>, Vec<usize>) {
        let t = self.shared.lock();
        (t.acked.clone(), t.order.clone())
    }
}

/// Creates a client for `generation` and spawns the task that drives its event loop.
fn connect(
    config: &PublisherConfig,
    generation: u64,
    shared: &Arc<Shared>,
    errors: &mpsc::UnboundedSender<(u64, String)>,
) -> Gate {
    let mut options = MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
    options
        .set_clean_session(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(config.max_packet_size, config.max_packet_size)
        .set_inflight(config.inflight.max(1));
    let capacity = usize::from(config.inflight.max(10));
    let (client, eventloop) = AsyncClient::new(options, capacity);
    let driver = tokio::spawn(drive(
        eventloop,
        generation,
        Arc::clone(shared),
        errors.clone(),
    ));
    Gate { client, driver }
}

/// Polls the event loop, mapping packet ids to messages, until the first error.
async fn drive(
    mut eventloop: EventLoop,
    generation: u64,
    shared: Arc<Shared>,
    errors: mpsc::UnboundedSender<(u64, String)>,
) {
    loop {
        let event = match eventloop.poll().await {
            Ok(event) => event,
            Err(e) => {
                let _ = errors.send((generation, e.to_string()));
                return;
            }
        };
        let mut t = shared.lock();
        if t.generation != generation {
            return;
        }
        match event {
            Event::Outgoing(Outgoing::Publish(pkid)) => {
                // rumqttc takes requests in channel order, so this is the oldest unassigned.
                if let Some(id) = t.unassigned.pop_front() {
                    t.inflight.insert(pkid, id);
                }
            }
            Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(id) = t.inflight.remove(&ack.pkid) {
                    if !t.acked[id] {
                        t.acked[id] = true;
                        t.progress.acked += 1;
                    }
                    drop(t);
                    shared.changed.notify_one();
                }
            }
            Event::Incoming(Packet::ConnAck(_)) => {
                t.progress.connects += 1;
                drop(t);
                shared.changed.notify_one();
            }
            _ => {}
        }
    }
}
