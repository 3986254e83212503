//! Ingest under disk pressure, through the pipeline's own loop: with the
//! store directory over its full mark, a message is neither committed nor
//! acked until there is room (the broker keeps it), and it is taken as soon
//! as room appears; disk use that does not move at all means sled holds
//! free space, so ingest resumes after `disk_guard::STALL` rather than
//! waiting forever. The pressure is a filler file in the store directory
//! (the cap counts everything there).

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_agent::classify::ClassifyStage;
use edge_agent::disk_guard::STALL;
use edge_agent::pipeline::Pipeline;
use edge_agent::source::{AckToken, Acker, Delivery};
use tokio::sync::{mpsc, Notify};

const CAP: u64 = 16 * 1024 * 1024;

/// Records when acks were handed over.
#[derive(Clone, Default)]
struct Acks(Arc<Mutex<Vec<Instant>>>);

impl Acker for Acks {
    fn ack(&mut self, tokens: Vec<AckToken>) {
        let now = Instant::now();
        self.0.lock().unwrap().extend(tokens.iter().map(|_| now));
    }
    fn flush(&mut self) {}
    fn publish(&mut self, _: &edge_agent::decode::sparkplug::Command) -> bool {
        false
    }
}

impl Acks {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    /// Waits up to `limit` for `n` acks; returns when the n-th came, if it did.
    fn wait_for(&self, n: usize, limit: Duration) -> Option<Instant> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(t) = self.0.lock().unwrap().get(n - 1) {
                return Some(*t);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

fn delivery(seq: u64) -> Delivery {
    let ts = 1_583_748_840_000 + seq as i64 * 1000;
    Delivery {
        topic: "plant/pump-1/sensors".into(),
        payload: Bytes::from(format!(r#"{{"seq":{seq},"ts":{ts},"temp":{seq}.5}}"#)),
        ack: AckToken::none(),
    }
}

/// Starts the pipeline loop on its own thread; returns its input and acks.
fn start(dir: &Path, rt: &tokio::runtime::Runtime) -> (mpsc::Sender<Delivery>, Acks) {
    let settings = common::demo_settings(dir, |c| {
        c.outbox.max_bytes = CAP;
        c.window.width = Duration::from_secs(10);
    });
    let pipeline =
        Pipeline::open(&settings, ClassifyStage::default(), Arc::new(Notify::new())).unwrap();
    let (tx, rx) = mpsc::channel(16);
    let acks = Acks::default();
    let (acker, handle) = (acks.clone(), rt.handle().clone());
    std::thread::spawn(move || pipeline.run(rx, acker, handle));
    (tx, acks)
}

/// [`start`], then one message through a calm store (acked).
fn start_calm(dir: &Path, rt: &tokio::runtime::Runtime) -> (mpsc::Sender<Delivery>, Acks) {
    let (tx, acks) = start(dir, rt);
    tx.blocking_send(delivery(1)).unwrap();
    acks.wait_for(1, Duration::from_secs(10))
        .expect("calm store: acked");
    (tx, acks)
}

/// A file of `bytes` real (allocated) bytes.
fn fill(path: &Path, bytes: u64) {
    std::fs::write(path, vec![0x5au8; usize::try_from(bytes).unwrap()]).unwrap();
}

#[test]
fn ingest_waits_at_the_full_mark_and_resumes_when_room_appears() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tx, acks) = start_calm(dir.path(), &rt);

    let filler = dir.path().join("filler");
    fill(&filler, CAP / 100 * 90);
    // Let the guard's throttled measurement see it.
    std::thread::sleep(Duration::from_millis(200));
    tx.blocking_send(delivery(2)).unwrap();
    std::thread::sleep(STALL / 2);
    assert_eq!(acks.count(), 1, "acked while the store was over its mark");
    // Make disk use move so the wait is not taken for a stall, then free it.
    let freed = Instant::now();
    std::fs::remove_file(&filler).unwrap();
    let acked = acks
        .wait_for(2, Duration::from_secs(10))
        .expect("room again: acked");
    assert!(
        acked.duration_since(freed) < STALL,
        "resumed {:?} after room appeared: by the stall rule, not by the room",
        acked.duration_since(freed)
    );
}

#[test]
fn ingest_resumes_after_a_stall_when_disk_use_does_not_move() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tx, acks) = start_calm(dir.path(), &rt);

    // 80% with the store's ballast (1/16 of the cap): over the full mark (the
    // filler's own jump counts as a step of ~74%, which lowers the mark to
    // 65%) and under the cap less that step (at most 15% is kept back for
    // it): the highest level a stall resumes at.
    fill(&dir.path().join("filler"), CAP / 100 * 80 - CAP / 16);
    std::thread::sleep(Duration::from_millis(200));
    let sent = Instant::now();
    tx.blocking_send(delivery(2)).unwrap();
    let acked = acks
        .wait_for(2, STALL * 5)
        .expect("a wait on unmoving disk use must end");
    let waited = acked.duration_since(sent);
    assert!(waited >= STALL, "acked after {waited:?}: it did not wait");
    // Disk use has not grown past the level it resumed at: no new wait.
    let sent = Instant::now();
    tx.blocking_send(delivery(3)).unwrap();
    let acked = acks.wait_for(3, STALL * 5).expect("acked");
    assert!(
        acked.duration_since(sent) < STALL,
        "waited again ({:?}) with disk use unchanged",
        acked.duration_since(sent)
    );
}
