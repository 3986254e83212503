//! Checks the simulator's per-device timelines over the real SKAB files: files are assigned
//! round-robin and joined with strictly increasing timestamps across file boundaries.
//!
//! No broker involved; it does not publish.

use hil_tests::mosquitto::require_or_skip;
use hil_tests::plan::{join_timeline, FILE_GAP_MS};
use hil_tests::skab::{list_files, read_file};

#[test]
fn real_timelines_increase_across_file_boundaries() {
    let skab = hil_tests::data_dir().join("SKAB");
    if !skab.is_dir() {
        require_or_skip(&format!("SKAB not found at {}", skab.display()));
        return;
    }
    let files = list_files(&skab).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let rel: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(skab.join("data"))
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    let mut sorted = rel.clone();
    sorted.sort();
    assert_eq!(rel, sorted);

    let devices = 3;
    let mut boundaries = 0;
    for d in 0..devices {
        let parts: Vec<_> = files
            .iter()
            .skip(d)
            .step_by(devices)
            .map(|f| read_file(f).unwrap().rows)
            .collect();
        let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
        let first_ts = parts[0][0].ts_ms;
        let timeline = join_timeline(parts, None);
        assert_eq!(timeline.len(), lens.iter().sum::<usize>());
        assert_eq!(timeline[0].ts_ms, first_ts, "first file keeps its time");
        for pair in timeline.windows(2) {
            assert!(pair[1].ts_ms > pair[0].ts_ms);
        }
        // At each boundary the next file starts exactly FILE_GAP_MS after the last row.
        let mut end = 0;
        for len in &lens[..lens.len() - 1] {
            end += len;
            assert_eq!(timeline[end].ts_ms - timeline[end - 1].ts_ms, FILE_GAP_MS);
            boundaries += 1;
        }
        assert!(timeline.iter().all(|r| r.values.len() == 8));
    }
    assert!(boundaries > 0);
}
