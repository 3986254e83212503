//! Unit tests of the MQTT source against a scripted fake broker: oversized packets, ack tokens, and the transport limit.

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
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/gateway.example.toml");
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
