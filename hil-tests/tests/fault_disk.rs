//! Disk faults under the real `edge-agent` (private Mosquitto, fleet-sim as a library,
//! the real `cloud-sink`), each ending with the checker: every sensor window of the
//! ledger stored exactly once (0 missing, 0 duplicated, 0 unexpected, fields exact) and
//! no `corrupt_record` counted.
//!
//! - `power_cut_keeps_everything_acked`: the agent's data dir is on ext4 in a
//!   loop-mounted image. At three depths of the run the agent is frozen (SIGSTOP, every
//!   thread stopped), the image file is copied without syncing (what the ext4 page cache
//!   had not written back is missing from the copy, as after a power cut), the agent is
//!   killed, the original unmounted and the copy mounted in its place (ext4 replays its
//!   journal) for the agent's next life. Each cut prints what the agent's files lost.
//!   It failed (acked readings lost: sled 0.34's flush() uses sync_file_range, so a
//!   grown log file came back shorter) until the store fdatasyncs sled's log itself
//!   (`edge-agent/src/disk_sync.rs`). `POWER_CUT_SYNC=1` syncs the filesystem before
//!   each copy, a control that must also pass (the harness is not the cause).
//! - `disk_full_stops_acks_then_resumes`: the data dir is on a 32 MiB tmpfs that a
//!   ballast file fills mid-run, up to 256 KiB free. The agent must log the no-space
//!   error and exit (a store error stops it; nothing it could not write is acked); it is
//!   restarted once while the disk is still full (as `Restart=always` would) and must
//!   exit again; then the ballast is deleted and the next restart resumes.
//!
//! Both need root (mount, loop devices): otherwise they skip, or fail under
//! `EDGE_REQUIRE_SERVICES=1`. They do not test I/O errors other than ENOSPC, a torn
//! sled file (see `edge-agent/tests/store_corruption.rs`), the drive's own volatile
//! cache (the copy holds what reached the loop device), the agent's exit code (the
//! harness does not expose it; the log is checked instead), or the models (removed
//! from the config). The image copy is not atomic against the kernel's own writeback,
//! which goes on while the agent is frozen; it takes tens of milliseconds.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{agent_config, tail, wait_for, Agent, Sink, GATEWAY, SERIAL};
use hil_tests::mosquitto::{require_or_skip, Mosquitto, Persistence};
use hil_tests::{data_dir, fetch_windows, CheckReport, SimOptions};

const DEVICES: usize = 3;
const WINDOW_MS: i64 = 60_000;
const ALPHA: f64 = 0.01;
/// SKAB sensor columns: one series each per device.
const SERIES_PER_DEVICE: usize = 8;
const START_LIMIT: Duration = Duration::from_secs(30);
const CHECK_LIMIT: Duration = Duration::from_secs(60);

/// Runs `program args…`; its stdout, or what went wrong.
fn run_cmd(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}

/// An ext4 image attached to a loop device and mounted; unmounted and detached on drop.
struct LoopDisk {
    image: PathBuf,
    mnt: PathBuf,
    dev: Option<String>,
    mounted: bool,
}

impl LoopDisk {
    /// Creates a sparse `bytes`-long image with a fresh ext4 on it.
    fn format(image: &Path, bytes: u64) -> Result<(), String> {
        let file = std::fs::File::create(image).map_err(|e| e.to_string())?;
        file.set_len(bytes).map_err(|e| e.to_string())?;
        run_cmd("mkfs.ext4", &["-q", "-F", path_str(image)]).map(drop)
    }

    /// Attaches `image` to a free loop device and mounts it on `mnt`.
    fn mount(image: &Path, mnt: &Path) -> Result<LoopDisk, String> {
        let dev = run_cmd("losetup", &["--find", "--show", path_str(image)])?
            .trim()
            .to_owned();
        let mut disk = LoopDisk {
            image: image.to_owned(),
            mnt: mnt.to_owned(),
            dev: Some(dev.clone()),
            mounted: false,
        };
        run_cmd("mount", &["-t", "ext4", &dev, path_str(mnt)])?;
        disk.mounted = true;
        Ok(disk)
    }

    /// Unmounts (cleanly: the kernel writes back what it holds) and detaches.
    fn unmount(&mut self) {
        if self.mounted {
            self.mounted = false;
            if let Err(e) = run_cmd("umount", &[path_str(&self.mnt)]) {
                eprintln!("{e}; detaching lazily");
                let _ = run_cmd("umount", &["-l", path_str(&self.mnt)]);
            }
        }
        if let Some(dev) = self.dev.take() {
            if let Err(e) = run_cmd("losetup", &["-d", &dev]) {
                eprintln!("{e}");
            }
        }
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// A size-limited tmpfs; unmounted on drop.
struct Tmpfs {
    mnt: PathBuf,
}

impl Tmpfs {
    fn mount(mnt: &Path, bytes: u64) -> Result<Tmpfs, String> {
        run_cmd(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes}"),
                "tmpfs",
                path_str(mnt),
            ],
        )?;
        Ok(Tmpfs {
            mnt: mnt.to_owned(),
        })
    }

    /// Bytes an unprivileged write could still allocate.
    fn available(&self) -> u64 {
        let out = run_cmd("stat", &["-f", "-c", "%a %S", path_str(&self.mnt)]).unwrap();
        let mut it = out.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        it.next().unwrap() * it.next().unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = run_cmd("umount", &[path_str(&self.mnt)]) {
            eprintln!("{e}; detaching lazily");
            let _ = run_cmd("umount", &["-l", path_str(&self.mnt)]);
        }
    }
}

/// Mosquitto and a temp dir, or `None` after `require_or_skip` (no SKAB data, no
/// Mosquitto, not root).
fn setup() -> Option<(tempfile::TempDir, Mosquitto)> {
    if !common::skab_or_skip() {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        require_or_skip("disk fault tests mount filesystems: not root");
        return None;
    }
    let broker = common::mosquitto_or_skip(Persistence::Off)?;
    Some((tempfile::tempdir().unwrap(), broker))
}

/// The harness's agent config with the store in `data_dir` and without the models
/// (their verdicts are not checked here; debug-mode inference would only slow the run).
fn disk_config(dir: &Path, data_dir: &Path, broker_port: u16, sink_url: &str) -> PathBuf {
    let path = agent_config(dir, broker_port, sink_url);
    let mut doc: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    doc["data_dir"] = path_str(data_dir).into();
    doc.remove("models");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

fn sim_options(broker: String, ledger: &Path, rows: usize, speedup: f64) -> SimOptions {
    SimOptions {
        broker,
        devices: DEVICES,
        skab_dir: data_dir().join("SKAB"),
        max_rows_per_device: Some(rows),
        speedup,
        ledger: Some(ledger.to_owned()),
        progress: false,
        ..SimOptions::default()
    }
}

/// Windows the sink holds for our gateway.
async fn sink_windows(url: &str) -> usize {
    fetch_windows(url, GATEWAY).await.map_or(0, |w| w.len())
}

async fn wait_for_windows(url: &str, n: usize) {
    wait_for(
        &format!("{n} windows at the sink"),
        Duration::from_secs(60),
        || async { (sink_windows(url).await >= n).then_some(()) },
    )
    .await;
}

async fn wait_recovered(agent: &Agent) -> String {
    common::wait_recovered(agent, START_LIMIT).await
}

/// Scheduler state letter of each thread of `pid` (`T` stopped, `Z` exited, …).
fn thread_states(pid: u32) -> Vec<char> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter_map(|stat| stat.rsplit_once(')')?.1.trim_start().chars().next())
        .collect()
}

/// True once the process has exited (a zombie nobody reaped yet, or gone).
fn exited(pid: u32) -> bool {
    let states = thread_states(pid);
    states.is_empty() || states.iter().all(|s| matches!(s, 'Z' | 'X'))
}

/// SIGSTOP, and wait until every thread is stopped: a thread inside a system call
/// (an fsync, a send) finishes it first, and its effect must not race the copy.
async fn freeze(pid: u32) {
    run_cmd("kill", &["-STOP", &pid.to_string()]).unwrap();
    wait_for("the agent to stop", Duration::from_secs(10), || async {
        let states = thread_states(pid);
        (!states.is_empty() && states.iter().all(|s| matches!(s, 'T' | 't' | 'Z' | 'X')))
            .then_some(())
    })
    .await;
}

/// Every regular file under `dir` with its bytes (relative path → content).
fn read_tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.insert(path.strip_prefix(root).unwrap().to_owned(), bytes);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// What a cut took away, per file of `before` that differs in `after`: (path, length
/// before, length after (`None`: gone), 4 KiB blocks of `before` missing or different).
fn lost_blocks(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<(PathBuf, usize, Option<usize>, usize)> {
    let mut out = Vec::new();
    for (path, old) in before {
        let new = after.get(path);
        let new_bytes = new.map_or(&[][..], Vec::as_slice);
        if old.as_slice() == new_bytes && new.is_some() {
            continue;
        }
        let blocks = old
            .chunks(4096)
            .enumerate()
            .filter(|(i, chunk)| new_bytes.get(i * 4096..i * 4096 + chunk.len()) != Some(*chunk))
            .count();
        out.push((path.clone(), old.len(), new.map(Vec::len), blocks));
    }
    out
}

fn total_len(tree: &BTreeMap<PathBuf, Vec<u8>>) -> usize {
    tree.values().map(Vec::len).sum()
}

async fn check_all(sink: &Sink, agent: &Agent, ledger: &Path, at_least: usize) -> CheckReport {
    let checked = common::assert_acked_stored_once(
        sink,
        &|| agent.log(),
        ledger,
        (WINDOW_MS, ALPHA),
        CHECK_LIMIT,
        at_least,
    )
    .await;
    checked.report
}

/// Waits until this life of the agent has exited on its own; panics with the log if not.
async fn wait_exit(agent: &Agent, limit: Duration) {
    // Its stdout closes when it exits (`wait_line` returns then).
    let _ = agent.wait_line(0, limit, |_| false).await;
    let pid = agent.pid();
    if !exited(pid) {
        let log = agent.log();
        wait_for(
            &format!(
                "the agent to exit; log:\n{}",
                tail(&common::notable(&log).join("\n"), 20)
            ),
            Duration::from_secs(10),
            || async { exited(pid).then_some(()) },
        )
        .await;
    }
}

/// Power cut: 3 devices × 3000 one-second rows at 200× (about 15 s of publishing).
const CUT_ROWS: usize = 3000;
const CUT_SPEEDUP: f64 = 200.0;
const IMAGE_BYTES: u64 = 64 << 20;
/// Cuts when the sink holds these fractions of the run's windows.
const CUT_DEPTHS: [f64; 3] = [0.15, 0.4, 0.65];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cut_keeps_everything_acked() {
    let _serial = SERIAL.lock().await;
    let Some((dir, broker)) = setup() else { return };
    let started = Instant::now();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let first = dir.path().join("disk-0.img");
    let mut disk =
        match LoopDisk::format(&first, IMAGE_BYTES).and_then(|()| LoopDisk::mount(&first, &mnt)) {
            Ok(d) => d,
            Err(e) => {
                require_or_skip(&format!("cannot loop-mount an ext4 image: {e}"));
                return;
            }
        };
    let control = std::env::var_os("POWER_CUT_SYNC").is_some();
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let data = mnt.join("agent-data");
    let config = disk_config(dir.path(), &data, broker.port(), &sink.url);
    let mut agent = Agent::start_traced(&config, "info");
    println!("start: {}", wait_recovered(&agent).await);
    common::wait_subscribed(&agent).await;
    let ledger = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(sim_options(
        broker.broker(),
        &ledger,
        CUT_ROWS,
        CUT_SPEEDUP,
    )));
    let windows = DEVICES * SERIES_PER_DEVICE * CUT_ROWS / 60;
    let (mut lost_total, mut replayed) = (0, Vec::new());
    for (cut, depth) in (1..).zip(CUT_DEPTHS) {
        let at = (windows as f64 * depth) as usize;
        wait_for_windows(&sink.url, at).await;
        assert!(
            !sim.is_finished(),
            "fleet-sim finished before cut {cut}: make the run longer"
        );
        freeze(agent.pid()).await;
        // What the agent sees of its files (the page cache included).
        let before = read_tree(&data);
        if control {
            run_cmd("sync", &["-f", path_str(&data)]).unwrap();
        }
        let copy = dir.path().join(format!("disk-{cut}.img"));
        let t = Instant::now();
        let copied = std::fs::copy(&disk.image, &copy).unwrap();
        let copy_took = t.elapsed();
        agent.kill9();
        let old = disk.image.clone();
        disk.unmount();
        std::fs::remove_file(&old).unwrap();
        disk = LoopDisk::mount(&copy, &mnt).unwrap();
        // What came back after ext4 replayed its journal on the copy.
        let after = read_tree(&data);
        let lost = lost_blocks(&before, &after);
        let blocks: usize = lost.iter().map(|l| l.3).sum();
        lost_total += blocks;
        agent.restart();
        let recovered = wait_recovered(&agent).await;
        replayed.push(common::field(&recovered, "replayed").unwrap());
        println!(
            "cut {cut} at {:.1}s (≥ {at} windows at the sink): image {copied} B copied{} in {} ms; \
             agent data {} B before the cut, {} B on the copy; {blocks} 4 KiB block(s) lost\n  \
             restarted: {recovered}",
            started.elapsed().as_secs_f64(),
            if control { " after a sync" } else { " unsynced" },
            copy_took.as_millis(),
            total_len(&before),
            total_len(&after),
        );
        for (path, old, new, blocks) in &lost {
            let new = new.map_or("gone".to_owned(), |n| format!("{n} B"));
            println!(
                "  {}: {old} B -> {new}, {blocks} block(s) lost",
                path.display()
            );
        }
        for line in agent.lines().iter().filter(|l| l.contains("ALARM")) {
            println!("  {line}");
        }
    }
    println!("{}", sim.await.unwrap().unwrap());
    assert!(
        replayed.iter().any(|n| *n > 0),
        "no cut hit open windows: {replayed:?}"
    );
    check_all(&sink, &agent, &ledger, windows / 2).await;
    println!(
        "{lost_total} block(s) of the agent's files lost over {} cuts; run took {:.1}s",
        CUT_DEPTHS.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Disk full: 3 devices × 2000 one-second rows at 200× (about 10 s of publishing).
const FULL_ROWS: usize = 2000;
const FULL_SPEEDUP: f64 = 200.0;
const TMPFS_BYTES: u64 = 32 << 20;
/// Free space the ballast leaves for the agent: less than one of sled's 128 KiB segments, so
/// its store needs more than is left within a second or two (with 256 KiB it reused space in
/// its own file for longer than the test waits).
const HEADROOM: u64 = 32 << 10;
const FAULT_LIMIT: Duration = Duration::from_secs(30);
const NO_SPACE: &str = "No space left on device";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_stops_acks_then_resumes() {
    let _serial = SERIAL.lock().await;
    let Some((dir, broker)) = setup() else { return };
    let started = Instant::now();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let fs = match Tmpfs::mount(&mnt, TMPFS_BYTES) {
        Ok(fs) => fs,
        Err(e) => {
            require_or_skip(&format!("cannot mount a tmpfs: {e}"));
            return;
        }
    };
    let sink = Sink::start(&dir.path().join("sink"), "127.0.0.1:0");
    let data = mnt.join("agent-data");
    let config = disk_config(dir.path(), &data, broker.port(), &sink.url);
    let mut agent = Agent::start_traced(&config, "info");
    println!("start: {}", wait_recovered(&agent).await);
    common::wait_subscribed(&agent).await;
    let ledger = dir.path().join("ledger.jsonl");
    let sim = tokio::spawn(hil_tests::run(sim_options(
        broker.broker(),
        &ledger,
        FULL_ROWS,
        FULL_SPEEDUP,
    )));
    let windows = DEVICES * SERIES_PER_DEVICE * FULL_ROWS / 60;
    wait_for_windows(&sink.url, windows / 5).await;

    // Fill the disk mid-run.
    let ballast = mnt.join("ballast");
    let fill = fs.available().saturating_sub(HEADROOM);
    std::fs::write(&ballast, vec![0u8; usize::try_from(fill).unwrap()]).unwrap();
    let full_at = Instant::now();
    println!(
        "{:.1}s: ballast of {fill} B leaves {} B free; agent data {} B",
        started.elapsed().as_secs_f64(),
        fs.available(),
        total_len(&read_tree(&data))
    );
    // sled reuses free segments inside its own file, so a full disk stops the
    // agent only once the store must grow; until then it keeps ingesting, which
    // is correct too (the EIO path is fault_io's). Either way nothing acked may
    // be lost: checked below.
    let _ = agent.wait_line(0, FAULT_LIMIT, |_| false).await;
    if exited(agent.pid()) {
        let log = agent.log();
        println!(
            "the agent exited {:.1}s after the disk filled:\n  {}",
            full_at.elapsed().as_secs_f64(),
            common::notable(&log).join("\n  ")
        );
        assert!(
            log.contains(NO_SPACE),
            "exited without a no-space error:\n{}",
            tail(&log, 30)
        );
        assert!(
            !sim.is_finished(),
            "fleet-sim finished before the disk filled: make the run longer"
        );

        // Restart=always: once more while the disk is still full.
        let offset = log.len();
        agent.restart();
        wait_exit(&agent, FAULT_LIMIT).await;
        let log = agent.log();
        let second = &log[offset..];
        println!(
            "restarted on the full disk, exited again:\n  {}",
            common::notable(second).join("\n  ")
        );
        assert!(
            second.contains(NO_SPACE),
            "exited without a no-space error:\n{second}"
        );
        // sled's open on a full disk can leave a snapshot it never finished;
        // the next start must delete it, not call the store corrupt.
        let unfinished: Vec<_> = read_tree(&data)
            .into_keys()
            .filter(|p| p.to_string_lossy().ends_with(".generating"))
            .collect();
        println!("snapshots sled left unfinished on the full disk: {unfinished:?}");
    } else {
        println!(
            "the agent still runs {:.1}s after the disk filled: its store had free segments",
            full_at.elapsed().as_secs_f64()
        );
    }

    // Space comes back; the next restart resumes.
    std::fs::remove_file(&ballast).unwrap();
    let free = fs.available();
    agent.restart();
    let recovered = wait_recovered(&agent).await;
    println!(
        "{:.1}s: ballast deleted ({free} B free), restarted: {recovered}",
        started.elapsed().as_secs_f64()
    );
    let set_aside: Vec<_> = std::fs::read_dir(&mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("corrupt"))
        .collect();
    assert!(
        set_aside.is_empty(),
        "the store was set aside: {set_aside:?}"
    );
    println!("{}", sim.await.unwrap().unwrap());
    check_all(&sink, &agent, &ledger, windows / 2).await;
    println!(
        "agent data {} B at the end; run took {:.1}s",
        total_len(&read_tree(&data)),
        started.elapsed().as_secs_f64()
    );
}
