//! The README's demo command works: the `demo` binary shows a batch of windows
//! within 30 s of starting, verifies everything it published at the sink, and
//! shows the log stream as templates with redacted exemplars.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use hil_tests::{data_dir, require_or_skip};

#[test]
fn demo_shows_batches_quickly_and_verifies_the_replay() {
    if !data_dir().join("SKAB").is_dir() {
        require_or_skip(&format!("SKAB data not found at {}", data_dir().display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_demo"))
        .args([
            "--once",
            "--speedup",
            "600",
            "--sink",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(dir.path().join("demo"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the demo");
    // Batch lines are logged (stderr or stdout depending on the subscriber); read both.
    let (tx, rx) = mpsc::channel::<String>();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    drop(tx);
    let mut first_batch = None;
    let mut verified = false;
    let mut transcript = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(120)) {
        if first_batch.is_none() && line.contains("batch 1:") {
            first_batch = Some(started.elapsed());
        }
        verified |= line.contains("check OK");
        transcript.push(line);
    }
    let status = child.wait().unwrap();
    let transcript = transcript.join("\n");
    assert!(status.success(), "demo failed:\n{transcript}");
    let first_batch = first_batch.unwrap_or_else(|| panic!("no batch line:\n{transcript}"));
    assert!(
        first_batch < Duration::from_secs(30),
        "first batch after {first_batch:?}"
    );
    assert!(verified, "demo did not verify the replay:\n{transcript}");
    assert!(
        transcript.contains("sink still serving at http://127.0.0.1:"),
        "{transcript}"
    );
    // The log stream arrives as templates with redacted exemplars, not as lines.
    let summary = transcript
        .lines()
        .find(|l| l.contains("log summaries at the sink:"))
        .unwrap_or_else(|| panic!("no log summary:\n{transcript}"));
    let templates: u64 = summary
        .split("sink: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(templates > 5, "{summary}");
    assert!(
        transcript.contains("e.g. ") && transcript.contains("<ip>"),
        "{transcript}"
    );
    // A few unsure rows went to the sink; the gateway decided the rest.
    let escalations = transcript
        .lines()
        .find(|l| l.contains("escalations at the sink:"))
        .unwrap_or_else(|| panic!("no escalation line:\n{transcript}"));
    let numbers: Vec<u64> = escalations
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        numbers.len() >= 2 && numbers[0] > 0 && numbers[0] * 50 < numbers[1],
        "{escalations}"
    );
    // The sink's float teacher re-judged every one of them.
    let teacher = transcript
        .lines()
        .find(|l| l.contains("the float teacher re-judged"))
        .unwrap_or_else(|| panic!("no teacher line:\n{transcript}"));
    let judged: Vec<u64> = teacher
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert!(
        judged.len() >= 2 && judged[0] == numbers[0] && judged[1] <= judged[0],
        "{teacher} vs {escalations}"
    );
}
